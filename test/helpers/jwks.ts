/**
 * A JWKS served over HTTP on loopback, for the JWT tests: two RS256 key pairs, key A published from
 * the start and key B once `publishB()` is called (a key rotated in), with a count of fetches.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';

type KeyPair = { publicKey: CryptoKey; privateKey: CryptoKey };

export interface JwksServer {
  readonly uri: string;
  readonly a: KeyPair;
  readonly b: KeyPair;
  /** How many times the JWKS was fetched. */
  readonly fetches: number;
  /** Adds key B (kid "B") to the published set. */
  publishB(): Promise<void>;
  close(): Promise<void>;
}

export async function serveJwks(): Promise<JwksServer> {
  const a = await generateKeyPair('RS256', { extractable: true });
  const b = await generateKeyPair('RS256', { extractable: true });
  const jwk = async (pair: KeyPair, kid: string): Promise<JWK> => ({ ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' });
  const keys: JWK[] = [await jwk(a, 'A')];
  let fetches = 0;
  const server = createServer((req, res) => {
    if (req.url !== '/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    uri: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    a,
    b,
    get fetches() {
      return fetches;
    },
    publishB: async () => {
      keys.push(await jwk(b, 'B'));
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
