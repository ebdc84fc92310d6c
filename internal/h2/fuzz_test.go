package h2

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// fuzzSeeds returns valid frame sequences to follow the client preface.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	// seq records what fn writes with a fresh framer and HPACK encoder.
	seq := func(fn func(fr *http2.Framer, enc func(pairs ...string) []byte)) {
		var out, hbuf bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		e := hpack.NewEncoder(&hbuf)
		enc := func(pairs ...string) []byte {
			hbuf.Reset()
			for i := 0; i+1 < len(pairs); i += 2 {
				_ = e.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]})
			}
			return bytes.Clone(hbuf.Bytes())
		}
		fn(fr, enc)
		seeds = append(seeds, out.Bytes())
	}
	seq(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("GET", "/")...), EndStream: true, EndHeaders: true})
	})
	seq(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 20000})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("POST", "/", "content-length", "5", "trailer", "x-t")...), EndHeaders: true})
		_ = fr.WriteData(1, false, []byte("hel"))
		_ = fr.WriteDataPadded(1, false, []byte("lo"), make([]byte, 7))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-t", "v"), EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(1, 100)
		_ = fr.WriteWindowUpdate(0, 100)
	})
	seq(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteSettings()
		block := enc(req("GET", "/", "x-long", "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv")...)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:5], EndStream: true})
		_ = fr.WriteContinuation(3, true, block[5:])
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	seq(func(fr *http2.Framer, enc func(...string) []byte) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
		_ = fr.WriteSettingsAck()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(req("HEAD", "/")...), EndStream: true, EndHeaders: true})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: enc(req("GET", "/", "cookie", "a=b")...), EndHeaders: true})
		_ = fr.WriteData(5, true, nil)
	})
	return seeds
}

// fuzzHandler reads the request body and answers, flushing on the way.
var fuzzHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Trailer", "X-Len")
	_, _ = w.Write([]byte("ok "))
	http.NewResponseController(w).Flush()
	_, _ = w.Write(b)
	w.Header().Set("X-Len", strconv.Itoa(len(b)))
})

// FuzzServeConn feeds arbitrary bytes after the client preface to
// ServeConn: it must neither panic nor hang once the client has gone.
//
// Coverage here depends on goroutine scheduling, which makes minimizing
// new inputs slow: run it with -fuzzminimizetime 1s, or the fuzzer
// spends most of -fuzztime minimizing at 0 execs/sec.
func FuzzServeConn(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(runFuzzOnce)
}

// runFuzzOnce serves one connection whose client sends the preface and
// data, then closes.
func runFuzzOnce(t *testing.T, data []byte) {
	logs := &countingHandler{}
	srv := &Server{Logger: slog.New(logs), MaxConcurrentStreams: 4, StreamWindow: 1 << 16, ConnWindow: 1 << 16}
	cli, sc := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.ServeConn(sc, fuzzHandler, false)
	}()
	go func() { _, _ = io.Copy(io.Discard, cli) }() // what the server writes
	written := make(chan struct{})
	go func() {
		defer close(written)
		if _, err := cli.Write([]byte(http2.ClientPreface)); err != nil {
			return
		}
		_, _ = cli.Write(data)
	}()
	select {
	case <-written:
	case <-served:
	case <-time.After(waitTimeout):
		t.Fatal("the server stopped reading without closing")
	}
	_ = cli.Close()
	select {
	case <-served:
	case <-time.After(waitTimeout):
		t.Fatal("ServeConn did not return after the client closed")
	}
	<-written
	if n := logs.n.Load(); n > 0 {
		// The handler does not panic: a logged panic is the server's.
		t.Fatalf("%d panics logged", n)
	}
}
