/**
 * Runs each child so that it cannot see other processes (design §8, `sandbox`). On Linux a child
 * gets its own user, pid and mount namespaces with its own /proc: the gateway's environment (the
 * agent's credential, every server's secret, the audit HMAC key) and its siblings' are not there
 * to read, and neither is their memory. The child keeps no capability in its namespaces, so it
 * cannot unmount that /proc, and the gateway's database files are hidden from it.
 *
 * Built from util-linux, which every common distribution ships: `unshare` makes the namespaces,
 * a POSIX `sh` (pid 1 of the namespace) hides the database with bind mounts of /dev/null, then
 * `setpriv` drops every capability and sets no_new_privs, and a second `sh` stays pid 1: it
 * forwards SIGTERM/SIGINT/SIGHUP to the server (pid 1 of a namespace ignores signals it has no
 * handler for), reaps orphans, and exits with the server's status. When pid 1 exits, the kernel
 * kills every process left in the namespace, even one that left the process group with setsid.
 *
 * What changes for a sandboxed server: a server killed by a signal is reported by the shell
 * convention, exit code 128 + the signal number; it sees itself as pid 2; it runs as the same
 * user, with the same files and network, so it is not a jail for what that user may touch.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** What isolation a child has (or, before it starts, would get): shown by `check` and `server_status`. */
export interface Isolation {
  readonly mode: 'namespaces' | 'none';
  /** Why there is none (config, OS, kernel), or what the namespaces are. */
  readonly reason: string;
}

/** What this host offers `sandbox: auto`. */
export interface SandboxSupport {
  readonly isolation: Isolation;
  /** The command line that runs `command` (an absolute path) with `args` isolated; only where mode is namespaces. */
  readonly wrap: ((command: string, args: readonly string[], options: WrapOptions) => { command: string; args: string[] }) | null;
}

export interface WrapOptions {
  /** Files the child must not see (bind-mounted over with /dev/null). */
  readonly hide: readonly string[];
  /** The child's environment has PWD of its own; otherwise the shells' PWD is removed, so it gets exactly its environment. */
  readonly keepPwd: boolean;
}

const NAMESPACES = 'own user, pid and mount namespaces and /proc; no capabilities; database files hidden';

/** Where util-linux and sh live; the gateway's PATH is not trusted for the sandbox's own tools. */
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

// pid 1 of the namespace, first part, with capabilities in it: hide the files named before "--"
// (bind-mount /dev/null over each that exists), then drop every capability for good and become
// the init below. $1 is the init script, $2 setpriv, $3 mount (absolute paths: not the child's PATH).
const SETUP = `
init=$1; setpriv=$2; mount=$3; shift 3
while [ "$#" -gt 0 ]; do
  f=$1; shift
  [ "$f" = "--" ] && break
  if [ -e "$f" ]; then
    "$mount" --bind /dev/null "$f" || { echo "mcp-gateway sandbox: could not hide $f" >&2; exit 126; }
  fi
done
exec "$setpriv" --no-new-privs --inh-caps=-all --bounding-set=-all -- /bin/sh -c "$init" mcp-gateway-init "$@"
`;
// (The init's $1 says whether the PWD a shell exports belongs in the server's environment.)

// pid 1 of the namespace, for the server's lifetime. Without job control a background command's
// stdin would be /dev/null: it gets the real one through fd 3. `wait` returns early when a
// trapped signal arrives, hence the loop; `kill -0` is true for a zombie, so its status is read.
const INIT = `
[ "$1" = keep-pwd ] || unset PWD
shift
trap 'kill -TERM "$c" 2>/dev/null' TERM
trap 'kill -INT "$c" 2>/dev/null' INT
trap 'kill -HUP "$c" 2>/dev/null' HUP
exec 3<&0
"$@" <&3 3<&- &
c=$!
exec 3<&-
s=0
while kill -0 "$c" 2>/dev/null; do wait "$c"; s=$?; done
exit "$s"
`;

let probed: Promise<SandboxSupport> | undefined;
let known: SandboxSupport | undefined;

/** What `sandbox: auto` gets on this host; probed once per process (a few milliseconds). */
export function sandboxSupport(): Promise<SandboxSupport> {
  return (probed ??= probe().then((support) => (known = support)));
}

/** The probe's answer if it has finished, for status reports that cannot wait. */
export function knownSandboxSupport(): SandboxSupport | undefined {
  return known;
}

async function probe(): Promise<SandboxSupport> {
  const none = (reason: string): SandboxSupport => ({ isolation: { mode: 'none', reason }, wrap: null });
  if (process.platform !== 'linux') {
    return none(`${process.platform} has no user namespaces: the child can read the gateway's environment and memory`);
  }
  const tools = ['unshare', 'setpriv', 'mount'].map((name) => [name, findSystemTool(name)] as const);
  const missing = tools.filter(([, found]) => found === null).map(([name]) => name);
  if (missing.length > 0 || !isExecutable('/bin/sh')) {
    return none(`${[...missing, ...(isExecutable('/bin/sh') ? [] : ['/bin/sh'])].join(', ')} not found (util-linux)`);
  }
  const [unshare, setpriv, mount] = tools.map(([, found]) => found!) as [string, string, string];
  const wrap = (command: string, args: readonly string[], { hide, keepPwd }: WrapOptions) => ({
    command: unshare,
    args: [
      '--user',
      '--map-current-user',
      '--pid',
      '--fork',
      '--kill-child',
      '--mount',
      '--mount-proc',
      '--propagation',
      'private',
      '--',
      '/bin/sh',
      '-c',
      SETUP,
      'mcp-gateway-sandbox',
      INIT,
      setpriv,
      mount,
      ...hide,
      '--',
      keepPwd ? 'keep-pwd' : 'no-pwd',
      command,
      ...args,
    ],
  });
  // The very command line a child gets, around a check of what it then sees: our init as pid 1
  // (so its own /proc), no capability left, and a hidden file empty.
  const dir = mkdtempSync(path.join(tmpdir(), 'mcp-gateway-probe-'));
  try {
    const hidden = path.join(dir, 'hidden');
    writeFileSync(hidden, 'visible');
    const check = 'grep -q mcp-gateway-init /proc/1/cmdline && echo "isolated $(grep CapEff /proc/self/status) [$(cat "$0")]"';
    const { command, args } = wrap('/bin/sh', ['-c', check, hidden], { hide: [hidden], keepPwd: false });
    const out = await run(command, args, 5_000);
    if (out.code !== 0) {
      const why = out.stderr.trim().split('\n').pop() || `exit code ${out.code}`;
      return none(`the kernel refused unprivileged user namespaces (${why})`);
    }
    const [isolated, , caps, seen] = out.stdout.trim().split(/\s+/);
    if (isolated !== 'isolated' || !/^0+$/.test(caps ?? '') || seen !== '[]') {
      return none(`the namespaces did not isolate as expected (${out.stdout.trim()})`);
    }
    return { isolation: { mode: 'namespaces', reason: NAMESPACES }, wrap };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function findSystemTool(name: string): string | null {
  for (const dir of SYSTEM_DIRS) {
    const file = path.join(dir, name);
    if (isExecutable(file)) return file;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

function run(
  command: string,
  args: readonly string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    // A minimal environment: the probe needs nothing of the gateway's.
    const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' }, timeout: timeoutMs });
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', (err) => resolve({ code: null, stdout, stderr: err.message }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * The absolute path `spawn` would run for `command` (searched in the child's PATH when it has no
 * "/"), checked here because inside the sandbox a missing command would only be a shell's exit
 * code 127. Throws an error shaped like spawn's (`code` ENOENT or EACCES).
 */
export function resolveCommand(command: string, pathEnv: string | undefined, cwd: string): string {
  const fail = (code: 'ENOENT' | 'EACCES') =>
    Object.assign(new Error(`spawn ${command} ${code}`), {
      code,
      errno: code === 'ENOENT' ? -2 : -13,
      syscall: `spawn ${command}`,
      path: command,
    });
  const candidates = command.includes('/')
    ? [path.resolve(cwd, command)]
    : (pathEnv ?? '').split(path.delimiter).map((dir) => path.resolve(cwd, dir || '.', command));
  let denied = false;
  for (const file of candidates) {
    try {
      if (!statSync(file).isFile()) continue;
    } catch {
      continue;
    }
    if (isExecutable(file)) return file;
    denied = true;
  }
  throw fail(denied ? 'EACCES' : 'ENOENT');
}
