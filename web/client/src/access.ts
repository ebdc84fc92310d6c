import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Answer, QuestionSchema, WatchResponse } from "./gen/sluice/access/v1/access_pb.js";
import { Resumable, type AttemptHooks, type ResumeOptions } from "./resumable.js";

/** Question is one "may I?" question: a procedure, the key it touches, its params. */
export type Question = MessageInitShape<typeof QuestionSchema>;

/** OpenWatch opens one AccessService.Watch call; the signal ends it. */
export type OpenWatch = (req: { questions: Question[] }, signal: AbortSignal) => AsyncIterable<WatchResponse>;

/** AccessWatchOptions configure an AccessWatch. */
export interface AccessWatchOptions extends ResumeOptions {
  /**
   * onAnswers receives the answers in question order after every change.
   * While the stream is down they are all undefined: a client that cannot
   * hear a revocation must not act on an old permission.
   */
  onAnswers?: (answers: Array<Answer | undefined>, watch: AccessWatch) => void;
}

/**
 * AccessWatch keeps live answers to a fixed set of questions over
 * AccessService.Watch, resuming (backoff with jitter) when the stream drops.
 * Use it to enable a control exactly while the server would accept the
 * call; the server still checks every call. The caller must call close().
 */
export class AccessWatch extends Resumable {
  /** answers holds the current answer to each question, in order. */
  answers: Array<Answer | undefined>;

  constructor(
    private readonly open: OpenWatch,
    readonly questions: Question[],
    private readonly opts: AccessWatchOptions = {},
  ) {
    super({
      ...opts,
      onStatus: (status, err) => {
        if (status !== "live") this.forget();
        opts.onStatus?.(status, err);
      },
    });
    this.answers = questions.map(() => undefined);
  }

  /** allowed reports whether question i is answered "allowed" right now. */
  allowed(i: number): boolean {
    return this.answers[i]?.allowed === true;
  }

  protected async attempt(signal: AbortSignal, hooks: AttemptHooks): Promise<boolean> {
    let first = true;
    for await (const res of this.open({ questions: this.questions }, signal)) {
      hooks.alive();
      if (res.answers.length === 0) continue; // heartbeat
      apply(this.answers, res);
      if (first) {
        first = false;
        hooks.healthy();
      }
      this.opts.onAnswers?.([...this.answers], this);
    }
    return false;
  }

  private forget(): void {
    if (this.answers.every((a) => a === undefined)) return;
    this.answers = this.answers.map(() => undefined);
    this.opts.onAnswers?.([...this.answers], this);
  }
}

/**
 * apply merges one WatchResponse into answers: each answer goes to the
 * position its index names, or to its own position when the server sent no
 * index (the first, complete message).
 */
export function apply(answers: Array<Answer | undefined>, res: WatchResponse): void {
  res.answers.forEach((a, i) => {
    const at = res.index.length === res.answers.length ? res.index[i] : i;
    if (at >= 0 && at < answers.length) answers[at] = a;
  });
}
