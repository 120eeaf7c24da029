/**
 * How the CLI ends (design §11): exit 0 ok, 1 a failed check (a broken chain, a server that did
 * not start, a credential refused), 2 bad usage or config. Commands throw these; `main` prints the
 * one-line message on stderr and exits with the code.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: 1 | 2,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new CliError(message, 2);
export const checkFailed = (message: string) => new CliError(message, 1);
