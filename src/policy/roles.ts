/**
 * Roles that no policy names: a key holding only such roles can do nothing (default deny), which
 * is almost always a typo (`keys create x y readr`). The CLI warns about them.
 */
import type { PolicyConfig } from '../config/schema.js';

/** The roles of `roles` that no policy lists (a `"*"` policy applies to them, but does not name them). */
export function rolesNoPolicyNames(policies: readonly PolicyConfig[], roles: readonly string[]): string[] {
  const named = new Set(policies.flatMap((p) => p.roles));
  return [...new Set(roles)].filter((role) => !named.has(role));
}

/** One line saying what a key with these unnamed roles can do, for a warning. */
export function unnamedRolesWarning(policies: readonly PolicyConfig[], unnamed: readonly string[], what: string): string {
  const named = [...new Set(policies.flatMap((p) => p.roles))].filter((r) => r !== '*');
  const everyone = policies.some((p) => p.roles.includes('*'));
  const roles = unnamed.map((r) => `"${r}"`).join(', ');
  return (
    `${unnamed.length === 1 ? 'role' : 'roles'} ${roles} of ${what} ${unnamed.length === 1 ? 'appears' : 'appear'} in no policy` +
    (named.length > 0 ? ` (the policies name: ${named.join(', ')})` : ' (there are no policies)') +
    (everyone ? '; only what the policies for everyone ("*") allow comes with it' : '; it grants nothing')
  );
}
