/**
 * Ends the children even when the gateway cannot: after `kill -9` of the gateway, a child that
 * ignores the end of its stdin (and SIGTERM) would otherwise live on. The reaper is a tiny `sh`
 * process in a session of its own, so signals aimed at the gateway's process group do not reach
 * it. It reads a pipe whose write end only the gateway holds: `+<pgid>` when a child's process
 * group starts, `-<pgid>` when it is gone. When the pipe closes, because the gateway exited in any
 * way, SIGKILL included, it sends SIGTERM to every group still listed, and SIGKILL 2 s later.
 *
 * What it cannot do: survive `kill -9` of itself, or end a process that left its group (setsid).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../log.js';

// POSIX sh. `pgids` holds " <pgid> <pgid> … ". SIGINT and SIGHUP are ignored: a terminal closing or
// Ctrl-C must not take the reaper down before the gateway's children.
const SCRIPT = `
trap '' INT HUP
pgids=" "
while IFS= read -r line; do
  case "$line" in
    +*) pgids="$pgids\${line#+} " ;;
    -*) pgids=$(printf '%s' "$pgids" | sed "s/ \${line#-} / /") ;;
  esac
done
[ "$pgids" = " " ] && exit 0
for p in $pgids; do kill -s TERM -- "-$p" 2>/dev/null; done
sleep 2
for p in $pgids; do kill -s KILL -- "-$p" 2>/dev/null; done
`;

/** Told about every child process group, so it can end them if the gateway dies. */
export interface GroupWatcher {
  add(pgid: number): void;
  remove(pgid: number): void;
}

export class Reaper implements GroupWatcher {
  private constructor(private readonly child: ChildProcess) {}

  /** Starts the reaper; null where it cannot run (no /bin/sh), and the gateway runs without it. */
  static start(log: Logger): Reaper | null {
    if (process.platform === 'win32') return null;
    try {
      // A minimal environment: the reaper needs kill, sed and sleep, and none of the gateway's
      // secrets (a child that could see it must find nothing in its environment).
      const child = spawn('/bin/sh', ['-c', SCRIPT], {
        detached: true,
        stdio: ['pipe', 'ignore', 'ignore'],
        env: { PATH: '/usr/bin:/bin' },
      });
      child.on('error', (err) => log.warn(`reaper unavailable: ${err.message}`));
      child.stdin!.on('error', () => {});
      // Neither the process nor its pipe keeps the gateway's event loop alive.
      child.unref();
      (child.stdin as unknown as { unref?: () => void }).unref?.();
      return new Reaper(child);
    } catch (err) {
      log.warn(`reaper unavailable: ${(err as Error).message}`);
      return null;
    }
  }

  add(pgid: number): void {
    this.write(`+${pgid}\n`);
  }

  remove(pgid: number): void {
    this.write(`-${pgid}\n`);
  }

  /** Normal shutdown: the children are already stopped; the reaper ends what is left and exits. */
  close(): void {
    this.child.stdin?.end();
  }

  private write(line: string): void {
    const stdin = this.child.stdin;
    if (stdin && !stdin.destroyed) stdin.write(line);
  }
}
