/**
 * Coalesces the messages written to one stream while handling one input (one I/O callback and the
 * promise chains it starts: flushed on process.nextTick, after they settle) into a single
 * write. A write to a pipe is a system call that also wakes the reader, which is most of the cost
 * of relaying a message; with many requests in flight, one write carries many messages.
 */
export class WriteBatcher {
  private pending: string[] = [];
  /** One promise per batch, shared by its messages (not one per message: less garbage under load). */
  private batch: { promise: Promise<void>; resolve: () => void } | null = null;
  private scheduled = false;

  constructor(
    private readonly write: (data: string) => boolean | void,
    private readonly onDrain: (resolve: () => void) => void,
  ) {}

  /** Queues a serialized message; resolves once it has been handed to the stream (and drained, if it had to wait). */
  push(line: string): Promise<void> {
    this.pending.push(line);
    if (!this.batch) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.batch = { promise, resolve };
    }
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(() => this.flush());
    }
    return this.batch.promise;
  }

  /** Writes everything queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    const release = this.batch!.resolve;
    this.pending = [];
    this.batch = null;
    if (this.write(data) === false) this.onDrain(release);
    else release();
  }

  /** Drops what is queued (the stream is gone); settles its promise. */
  discard(): void {
    this.pending = [];
    const batch = this.batch;
    this.batch = null;
    batch?.resolve();
  }
}
