/**
 * Writes what the recording stages hand it. The audit rows of the requests that end while handling
 * one input are committed together in one `BEGIN IMMEDIATE` transaction, and each caller's promise
 * settles only after that commit (the reply waits for it). Usage counters are summed in memory and
 * written at most a second later (with the next audit commit, or on their own), so a call's
 * critical path writes one page, not two; `close()` writes what is left.
 *
 * Fail closed without a second write per call: space is kept in reserve, twice. Inside the
 * database, a ballast of pages (audit_ballast) for when `max_page_count` is reached; on disk, a
 * reserve file beside it (`<database>-reserve`), since in WAL mode every commit grows the -wal
 * file and freed pages inside the database give no disk space back. When a commit fails because
 * the disk or the database is full, both are released and the commit retried, so requests already
 * forwarded are still recorded, and the recorder refuses new requests (`canAccept`) until both
 * can be restored.
 */
import { statSync, unlinkSync, writeFileSync } from 'node:fs';
import type { AuditDraft, AuditStore } from '../audit/store.js';
import type { Logger } from '../log.js';
import type { UsageDelta, UsageStore } from '../metering/store.js';
import { StoreError, type Db } from './db.js';

interface Entry {
  readonly audit: AuditDraft;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

export type UsageSum = { -readonly [K in keyof UsageDelta]-?: UsageDelta[K] };

/** What the recording stages write through, on either engine. */
export interface Recorder {
  /** Appends an audit row; resolves once it is committed (the reply waits for that). */
  audit(draft: AuditDraft): Promise<void>;
  /** Adds to the usage counters (written within a second). */
  addUsage(delta: UsageDelta): void;
  /** Whether a new request may proceed (false while records cannot be written). */
  canAccept(now?: number): boolean;
  /** Why requests are being refused, if they are. */
  readonly refusal: string | null;
  /** Commits what is queued, usage counters included when `withUsage`. */
  flush(withUsage?: boolean): void | Promise<void>;
  /** Writes everything still held (shutdown). */
  close(): void | Promise<void>;
  /** Told how long each commit took, in seconds (metrics). */
  onCommit: ((seconds: number) => void) | undefined;
}

/**
 * Usage deltas summed in memory by (hour, consumer, server, tool) until they are written, so a
 * call's critical path never writes a usage row of its own.
 */
export class UsageBuffer {
  private sums = new Map<string, UsageSum>();

  get size(): number {
    return this.sums.size;
  }

  add(delta: UsageDelta): void {
    const key = `${delta.hour}\u0000${delta.consumer_id}\u0000${delta.server}\u0000${delta.tool}`;
    const sum = this.sums.get(key);
    if (!sum) this.sums.set(key, { ...delta, latency_max_ms: delta.latency_max_ms ?? delta.latency_ms });
    else {
      sum.calls += delta.calls;
      sum.errors += delta.errors;
      sum.denied += delta.denied;
      sum.rate_limited += delta.rate_limited;
      sum.latency_ms += delta.latency_ms;
      sum.latency_max_ms = Math.max(sum.latency_max_ms, delta.latency_max_ms ?? delta.latency_ms);
      sum.cost += delta.cost;
    }
  }

  /** The sums so far, and an empty buffer. */
  take(): UsageSum[] {
    const all = [...this.sums.values()];
    this.sums = new Map();
    return all;
  }
}

/** How long usage counters may wait in memory before they are written. */
const USAGE_FLUSH_MS = 1_000;

const BALLAST_ROWS = 16;
const BALLAST_ROW_BYTES = 64 * 1024;
/**
 * Disk kept free for the -wal file: room for the records of the requests in flight when the disk
 * fills (a row of two 16 KiB values is about 40 KiB of WAL frames) and for releasing the ballast.
 */
const RESERVE_FILE_BYTES = 4 * 1024 * 1024;
/** How often a refusing recorder tries to restore its ballast. */
const PROBE_INTERVAL_MS = 1_000;

export class SqliteRecorder implements Recorder {
  private queue: Entry[] = [];
  private scheduled = false;
  private degraded: { since: number; reason: string } | null = null;
  private lastProbe = 0;
  private readonly usageSums = new UsageBuffer();
  private usageTimer: NodeJS.Timeout | null = null;
  private readonly commit: (entries: readonly Entry[], usage: readonly UsageSum[]) => void;
  /** Set by a commit that found the ballast gone (another process sharing the file released it). */
  private ballastGone = false;
  private readonly reserveFile: string | null;

  constructor(
    private readonly db: Db,
    private readonly audits: AuditStore | null,
    private readonly usage: UsageStore | null,
    private readonly log: Logger,
  ) {
    this.reserveFile = db.memory ? null : `${db.name}-reserve`;
    const ballastRows = audits ? db.prepare<[], { n: number }>('SELECT count(*) AS n FROM audit_ballast') : null;
    this.commit = db.transaction((entries: readonly Entry[], usage: readonly UsageSum[]) => {
      if (this.audits && entries.length > 0) this.audits.appendInTransaction(entries.map((e) => e.audit));
      if (this.usage && usage.length > 0) this.usage.addInTransaction(usage);
      // The ballast is shared by every gateway process on the file: when another one released it,
      // the database is full and this process must stop taking requests too, or it would spend
      // the reserve on new requests and then fail to record ones it already forwarded.
      this.ballastGone = ballastRows !== null && !this.degraded && ballastRows.get()!.n < BALLAST_ROWS;
    }).immediate;
  }

  /** Lays down the ballast; throws when the database cannot be written at all (start refused). */
  prepare(): void {
    if (!this.audits) return;
    try {
      this.restoreReserve();
      this.restoreBallast();
    } catch (err) {
      const message = (err as Error).message;
      throw new StoreError(
        this.db.name,
        `cannot reserve space for the audit log (SQLite: ${message})` +
          (isFull(err) ? '; free disk space or raise limits.maxDatabaseBytes' : ''),
      );
    }
  }

  /**
   * Whether a new request may proceed: false while the database cannot take more records. While
   * refusing, it retries the ballast at most once a second and resumes when that succeeds.
   */
  canAccept(now = Date.now()): boolean {
    if (!this.degraded) return true;
    if (now - this.lastProbe < PROBE_INTERVAL_MS) return false;
    this.lastProbe = now;
    try {
      this.restoreReserve();
      this.restoreBallast();
      this.log.warn(`the database is writable again after ${Math.round((now - this.degraded.since) / 1000)} s; accepting requests`);
      this.degraded = null;
      return true;
    } catch {
      return false;
    }
  }

  /** Why requests are being refused, if they are. */
  get refusal(): string | null {
    return this.degraded?.reason ?? null;
  }

  /** Appends an audit row; resolves once it is committed. */
  audit(draft: AuditDraft): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ audit: draft, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // After the promise chains of the current input settle: everything that ended with it shares one commit.
        process.nextTick(() => this.flush());
      }
    });
  }

  /** Adds to the usage counters (written within a second). */
  addUsage(delta: UsageDelta): void {
    if (!this.usage) return;
    this.usageSums.add(delta);
    if (!this.usageTimer) {
      this.usageTimer = setTimeout(() => this.flush(true), USAGE_FLUSH_MS);
      this.usageTimer.unref();
    }
  }

  /** Commits the queued audit rows, and the usage counters when they are due (or `withUsage`). */
  flush(withUsage = false): void {
    this.scheduled = false;
    const entries = this.queue;
    const usageDue = withUsage || (this.usageTimer !== null && entries.length > 0 && this.usageSums.size > 64);
    if (entries.length === 0 && !(usageDue && this.usageSums.size > 0)) return;
    this.queue = [];
    let usage: UsageSum[] = [];
    if (usageDue) {
      usage = this.usageSums.take();
      if (this.usageTimer) clearTimeout(this.usageTimer);
      this.usageTimer = null;
    }
    try {
      const t0 = performance.now();
      this.commitOrRelease(entries, usage);
      this.onCommit?.((performance.now() - t0) / 1000);
    } catch (err) {
      for (const e of entries) e.reject(err as Error);
      // Usage that could not be written is kept for the next attempt.
      for (const u of usage) this.addUsage(u);
      return;
    }
    for (const e of entries) e.resolve();
  }

  /** Told how long each commit took, in seconds (metrics). */
  onCommit: ((seconds: number) => void) | undefined;

  /** Writes everything still held (shutdown). */
  close(): void {
    this.flush(true);
  }

  private commitOrRelease(entries: readonly Entry[], usage: readonly UsageSum[]): void {
    try {
      this.commit(entries, usage);
      if (this.ballastGone) {
        this.ballastGone = false;
        this.degrade(
          new Error('database or disk is full: another gateway process on this file released the space reserved for the audit log'),
        );
      }
      return;
    } catch (err) {
      this.degrade(err as Error);
      if (!isFull(err)) throw err;
    }
    // Full: give the reserve to the records of requests that already ran, and retry. The file
    // first: releasing the ballast is itself a write to the -wal file, which needs disk space.
    this.releaseReserve();
    this.db.prepare('DELETE FROM audit_ballast').run();
    this.commit(entries, usage);
  }

  private degrade(err: Error): void {
    if (this.degraded) return;
    this.degraded = { since: Date.now(), reason: err.message };
    this.lastProbe = Date.now();
    this.log.error(`cannot write the database (${err.message}); refusing new requests until it can`);
  }

  /** Writes the reserve file (zeros, so the space is allocated, not sparse); throws when it cannot. */
  private restoreReserve(): void {
    if (!this.reserveFile || !this.audits) return;
    if (holdsReserve(this.reserveFile)) return; // left by an earlier run, whole: nothing to write
    try {
      writeFileSync(this.reserveFile, Buffer.alloc(RESERVE_FILE_BYTES), { mode: 0o600 });
    } catch (err) {
      // A partial file holds space the records may need: remove it.
      this.releaseReserve();
      const e = err as NodeJS.ErrnoException;
      throw Object.assign(new Error(`cannot reserve ${RESERVE_FILE_BYTES} bytes of disk in ${this.reserveFile}: ${e.message}`), {
        code: e.code === 'ENOSPC' ? 'SQLITE_FULL' : e.code,
      });
    }
  }

  private releaseReserve(): void {
    if (!this.reserveFile) return;
    try {
      unlinkSync(this.reserveFile);
    } catch {
      // not there
    }
  }

  /**
   * Lays down the missing ballast rows. A recovering recorder always writes (a whole ballast has
   * one row rewritten): finding the ballast in place does not show that the database takes writes
   * again — a failure that was not "full" (a lock held past the busy timeout, an I/O error) leaves
   * it untouched. At startup a whole ballast is left as it is.
   * The rows are counted inside the write transaction, so processes restoring at once lay down one
   * ballast, not one each.
   */
  private restoreBallast(): void {
    const count = this.db.prepare<[], { n: number }>('SELECT count(*) AS n FROM audit_ballast');
    const insert = this.db.prepare('INSERT INTO audit_ballast (pad) VALUES (zeroblob(?))');
    const dropOne = this.db.prepare('DELETE FROM audit_ballast WHERE id = (SELECT max(id) FROM audit_ballast)');
    this.db
      .transaction(() => {
        const have = count.get()!.n;
        if (have === BALLAST_ROWS && !this.degraded) return; // intact (a recovering recorder re-proves the space)
        if (have >= BALLAST_ROWS) dropOne.run();
        for (let i = Math.min(have, BALLAST_ROWS - 1); i < BALLAST_ROWS; i++) insert.run(BALLAST_ROW_BYTES);
      })
      .immediate();
  }
}

/** Whether the reserve file is there at full size with its blocks allocated (not sparse). */
function holdsReserve(file: string): boolean {
  try {
    const st = statSync(file);
    return st.size === RESERVE_FILE_BYTES && st.blocks * 512 >= RESERVE_FILE_BYTES;
  } catch {
    return false;
  }
}

function isFull(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return (
    code === 'SQLITE_FULL' ||
    (typeof code === 'string' && code.startsWith('SQLITE_IOERR')) ||
    /disk is full/i.test(String((err as Error)?.message))
  );
}
