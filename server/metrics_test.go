package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"connectrpc.com/connect"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	channelv1 "github.com/sluicehq/sluice/gen/sluice/channel/v1"
	messagev1 "github.com/sluicehq/sluice/gen/sluice/message/v1"
	orgv1 "github.com/sluicehq/sluice/gen/sluice/org/v1"
	syncv1 "github.com/sluicehq/sluice/gen/sluice/sync/v1"
	"github.com/sluicehq/sluice/gen/sluice/user/v1/userv1connect"
	"github.com/sluicehq/sluice/internal/testenv"
)

// families scrapes base/metrics with the Prometheus text parser.
func families(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the samples of name whose labels include every pair of want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	sum := 0.0
samples:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue samples
			}
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// The counters an operator watches move when the things they count happen:
// a write, a delivery, a revocation, a relay republish and a failed job.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	nats := testenv.StartNATS(t)
	cfg := baseConfig(t)
	cfg.NATSURL = nats.URL()
	cfg.SMTPAddr, cfg.MailDomain = "127.0.0.1:1", "example.test" // every mail fails
	app := startApp(t, cfg)
	crashy := cfg
	crashy.NoPublish = true // commits, never publishes: the relay of app must
	quiet := startApp(t, crashy)
	ops := httptest.NewServer(app.OpsHandler())
	t.Cleanup(ops.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := families(t, ops.URL)
	eventually := func(what string, cond func(map[string]*dto.MetricFamily) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if cond(families(t, ops.URL)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not move", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	moved := func(name string, labels map[string]string) func(map[string]*dto.MetricFamily) bool {
		return func(now map[string]*dto.MetricFamily) bool {
			return value(now, name, labels) > value(before, name, labels)
		}
	}

	alice := chatLogin(t, app.url, "alice")
	bob := login(t, app.url, "bob")
	o, err := alice.org.CreateOrg(ctx, connect.NewRequest(&orgv1.CreateOrgRequest{Name: "Acme"}))
	if err != nil {
		t.Fatal(err)
	}
	orgID := o.Msg.GetOrg().GetId()
	admit(t, ctx, app.url, alice.org, orgID, "bob", orgv1.Role_ROLE_MEMBER)
	profile := bob.subscribe(t, &syncv1.SubscribeRequest{Records: []*syncv1.RecordTarget{{Key: "user/alice"}}})
	profile.untilSynced(t)

	// A write and its delivery.
	alice.setAvatar(t, "https://example.com/m.png")
	profile.next(t, 10*time.Second)
	eventually("a write", moved("sluice_rpc_requests_total", map[string]string{"procedure": userv1connect.UserServiceSetAvatarUrlProcedure, "code": "ok"}))
	eventually("the publication", moved("sluice_publisher_published_total", nil))
	eventually("a delivery", moved("sluice_stream_deliveries_total", nil))

	// A revocation: bob leaves the organization, so alice's profile is no
	// longer his to read.
	if _, err := alice.org.RemoveMember(ctx, connect.NewRequest(&orgv1.RemoveMemberRequest{OrgId: orgID, UserId: "bob"})); err != nil {
		t.Fatal(err)
	}
	eventually("a revocation", moved("sluice_stream_revocations_total", nil))

	// A change committed by an instance that never publishes: the relay of
	// this one sends it.
	carol := login(t, quiet.url, "carol")
	carol.setAvatar(t, "https://example.com/late.png")
	eventually("a relay republish", moved("sluice_relay_republished_total", nil))

	// A job that fails: the e-mail of a mention (the SMTP server is down).
	dave := chatLogin(t, app.url, "dave")
	admit(t, ctx, app.url, alice.org, orgID, "dave", orgv1.Role_ROLE_MEMBER)
	c, err := alice.chan_.CreateChannel(ctx, connect.NewRequest(&channelv1.CreateChannelRequest{OrgId: orgID, Name: "general"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dave.chan_.JoinChannel(ctx, connect.NewRequest(&channelv1.JoinChannelRequest{ChannelId: c.Msg.GetChannel().GetId()})); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.msg.PostMessage(ctx, connect.NewRequest(&messagev1.PostMessageRequest{ChannelId: c.Msg.GetChannel().GetId(), Text: "hi @dave"})); err != nil {
		t.Fatal(err)
	}
	eventually("a failed job", func(now map[string]*dto.MetricFamily) bool {
		return value(now, "sluice_jobs", map[string]string{"state": "retrying"})+value(now, "sluice_jobs", map[string]string{"state": "dead"}) > 0
	})

	// By now every metric of OPERATIONS.md has something to say.
	profile.cancel()
	eventually("a stream's end", moved("sluice_rpc_streams_total", nil))
	checkDocumented(t, families(t, ops.URL))
}
