/**
 * Coalesces the messages written to one stream while handling one input (one I/O callback and the
 * promise chains it starts: flushed on process.nextTick, after they settle) into a single
 * write. A write to a pipe is a system call that also wakes the reader, which is most of the cost
 * of relaying a message; with many requests in flight, one write carries many messages.
 */
export class WriteBatcher {
  private pending: string[] = [];
  private waiters: (() => void)[] = [];
  private scheduled = false;

  constructor(private readonly write: (data: string) => boolean | void, private readonly onDrain: (resolve: () => void) => void) {}

  /** Queues a serialized message; resolves once it has been handed to the stream (and drained, if it had to wait). */
  push(line: string): Promise<void> {
    this.pending.push(line);
    const done = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
    return done;
  }

  /** Writes everything queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    const release = () => {
      for (const w of waiters) w();
    };
    if (this.write(data) === false) this.onDrain(release);
    else release();
  }

  /** Drops what is queued (the stream is gone); resolves its waiters. */
  discard(): void {
    this.pending = [];
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
