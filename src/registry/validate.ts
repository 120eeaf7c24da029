/**
 * Checks a call's arguments against the tool's `inputSchema` before it is forwarded, so a bad call
 * is refused with INVALID_ARGUMENTS naming the field instead of reaching the child. Validators are
 * compiled on a tool's first call and kept per tool entry; a schema that does not compile (remote
 * $ref, unknown dialect) is not enforced here and the child validates it.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { ajvRegExpEngine } from '../config/safe-regex.js';
import { GatewayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RawEntry } from './child.js';

// ajv-formats is CommonJS; its default export arrives as the module object under NodeNext.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: unknown) => void;

type Dialect = 'draft-07' | '2019-09' | '2020-12';

export class ArgumentValidator {
  private readonly compiled = new WeakMap<RawEntry, ValidateFunction | null>();
  private readonly engines = new Map<Dialect, Ajv>();

  constructor(private readonly log: Logger) {}

  /** Throws INVALID_ARGUMENTS when `args` does not satisfy the tool's inputSchema. */
  check(server: string, tool: RawEntry, args: unknown): void {
    let validate = this.compiled.get(tool);
    if (validate === undefined) {
      validate = this.compile(server, tool);
      this.compiled.set(tool, validate);
    }
    if (validate === null || validate(args ?? {})) return;
    const error = validate.errors?.[0];
    const { field, problem } = describe(error);
    throw new GatewayError(
      'INVALID_ARGUMENTS',
      `${field ? `argument "${field}"` : 'arguments'} ${problem} (tool "${tool.name}" on server "${server}"; see its inputSchema)`,
      { server, tool: tool.name, ...(field ? { field } : {}) },
    );
  }

  private compile(server: string, tool: RawEntry): ValidateFunction | null {
    const schema = tool['inputSchema'];
    if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return null;
    const { $schema, ...rest } = schema as Record<string, unknown>;
    const dialect = dialectOf($schema);
    const ajv = this.engine(dialect);
    try {
      const fn = ajv.compile(rest);
      // ajv caches every compiled schema forever; a catalog that changes would leak them.
      ajv.removeSchema(rest);
      return fn;
    } catch (err) {
      this.log.warn(`tool "${tool.name}" of server "${server}": inputSchema not enforced by the gateway (${(err as Error).message})`);
      return null;
    }
  }

  private engine(dialect: Dialect): Ajv {
    let ajv = this.engines.get(dialect);
    if (!ajv) {
      // Patterns come from the child's schema and inputs from the agent: a backtracking engine
      // would let `"pattern": "^(a|a)*$"` freeze the gateway, so they run in linear time (RE2).
      const options = {
        strict: false,
        allErrors: false,
        validateSchema: false,
        validateFormats: true,
        code: { regExp: ajvRegExpEngine },
      } as const;
      ajv = dialect === '2020-12' ? new Ajv2020(options) : dialect === '2019-09' ? new Ajv2019(options) : new Ajv(options);
      addFormats(ajv);
      this.engines.set(dialect, ajv);
    }
    return ajv;
  }
}

function dialectOf($schema: unknown): Dialect {
  if (typeof $schema !== 'string') return '2020-12'; // the MCP default dialect
  if ($schema.includes('2019-09')) return '2019-09';
  if (/draft-0[4-7]/.test($schema)) return 'draft-07';
  return '2020-12';
}

function describe(error: ErrorObject | undefined): { field: string; problem: string } {
  if (!error) return { field: '', problem: 'do not match the schema' };
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'required' && typeof params['missingProperty'] === 'string') {
    return { field: [...path, params['missingProperty']].join('.'), problem: 'is required' };
  }
  if (error.keyword === 'additionalProperties' && typeof params['additionalProperty'] === 'string') {
    return { field: [...path, params['additionalProperty']].join('.'), problem: 'is not allowed' };
  }
  return { field: path.join('.'), problem: error.message ?? 'is invalid' };
}
