/**
 * Coalesces the messages written to one stream while handling one input (one I/O callback and the
 * promise chains it starts: flushed on process.nextTick, after they settle) into a single
 * write. A write to a pipe is a system call that also wakes the reader, which is most of the cost
 * of relaying a message; with many requests in flight, one write carries many messages.
 */
export class WriteBatcher {
  private pending: string[] = [];
  private pendingLength = 0;
  /** Batches written while the stream was full, released together on its next 'drain'. */
  private draining: (() => void)[] | null = null;
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
    this.pendingLength += line.length;
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

  /** Characters queued and not yet handed to the stream. */
  get pendingChars(): number {
    return this.pendingLength;
  }

  /** Writes everything queued now. */
  flush(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : this.pending.join('');
    const release = this.batch!.resolve;
    this.pending = [];
    this.pendingLength = 0;
    this.batch = null;
    if (this.write(data) !== false) {
      release();
    } else if (this.draining) {
      // One 'drain' listener at a time, however many batches wait for it.
      this.draining.push(release);
    } else {
      const waiting = (this.draining = [release]);
      this.onDrain(() => {
        this.draining = null;
        for (const resolve of waiting) resolve();
      });
    }
  }

  /** Drops what is queued (the stream is gone); settles its promise. */
  discard(): void {
    this.pending = [];
    this.pendingLength = 0;
    const batch = this.batch;
    this.batch = null;
    batch?.resolve();
  }
}
