// Interop with npm `jose`. `verify DIR`: verify every DIR/ours-ALG.token with DIR/ours-ALG.public.json.
// `sign DIR`: for every algorithm, make a key and a token, and write theirs-ALG.{public.json,token}.
import * as jose from 'jose';
import { readFileSync, writeFileSync } from 'node:fs';

const ALGS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512', 'EdDSA'];
const [mode, dir] = process.argv.slice(2);
const now = Math.floor(Date.now() / 1000);
let failures = 0;

for (const alg of ALGS) {
  try {
    if (mode === 'verify') {
      const jwk = JSON.parse(readFileSync(`${dir}/ours-${alg}.public.json`, 'utf8'));
      const key = await jose.importJWK(jwk, alg);
      const token = readFileSync(`${dir}/ours-${alg}.token`, 'utf8').trim();
      const { payload, protectedHeader } = await jose.jwtVerify(token, key, {
        issuer: 'https://portcullis.test', audience: 'interop', typ: 'at+jwt', algorithms: [alg],
      });
      if (payload.sub !== 'interop-user' || protectedHeader.alg !== alg) throw new Error('claims differ');
      // A tampered token must fail.
      const [h, p, s] = token.split('.');
      const flipped = s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
      let refused = false;
      try { await jose.jwtVerify(`${h}.${p}.${flipped}`, key); } catch { refused = true; }
      if (!refused) throw new Error('tampered token accepted');
    } else if (mode === 'sign') {
      let secret, publicJwk;
      if (alg.startsWith('HS')) {
        const bytes = crypto.getRandomValues(new Uint8Array(Number(alg.slice(2)) / 8));
        secret = bytes;
        publicJwk = { kty: 'oct', k: jose.base64url.encode(bytes) };
      } else {
        const { publicKey, privateKey } = await jose.generateKeyPair(alg, { extractable: true });
        secret = privateKey;
        publicJwk = await jose.exportJWK(publicKey);
      }
      publicJwk.alg = alg;
      publicJwk.kid = `jose-${alg}`;
      const token = await new jose.SignJWT({ scope: 'read' })
        .setProtectedHeader({ alg, kid: publicJwk.kid, typ: 'at+jwt' })
        .setIssuer('https://peer.test').setAudience('interop').setSubject('peer-user')
        .setIssuedAt(now).setExpirationTime(now + 300).setJti(`jti-${alg}`)
        .sign(secret);
      writeFileSync(`${dir}/theirs-${alg}.public.json`, JSON.stringify(publicJwk));
      writeFileSync(`${dir}/theirs-${alg}.token`, token);
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
    console.log(`jose ${mode} ${alg}: ok`);
  } catch (e) {
    failures++;
    console.log(`jose ${mode} ${alg}: FAILED: ${e.message}`);
  }
}
process.exit(failures ? 1 : 0);
