// Drives a running Portcullis server with npm openid-client (discovery, client_credentials, refresh,
// introspection, revocation) and npm jose (createRemoteJWKSet + jwtVerify with typ at+jwt), unchanged.
// Usage: node server.mjs ISSUER CLIENT_ID CLIENT_SECRET USERNAME PASSWORD
import * as client from 'openid-client';
import * as jose from 'jose';

const [issuer, clientId, clientSecret, username, password] = process.argv.slice(2);
let failures = 0;
const check = (name, ok, detail = '') => {
  console.log(`openid-client/jose ${name}: ${ok ? 'ok' : 'FAILED ' + detail}`);
  if (!ok) failures++;
};

const config = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret), {
  execute: [client.allowInsecureRequests],
});
check('discovery', config.serverMetadata().issuer === issuer);

const cc = await client.clientCredentialsGrant(config, { scope: 'read' });
check('client_credentials', cc.token_type.toLowerCase() === 'bearer' && cc.scope === 'read', JSON.stringify(cc));

const jwks = jose.createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri), {
  [jose.customFetch]: fetch,
});
const { payload, protectedHeader } = await jose.jwtVerify(cc.access_token, jwks, {
  issuer,
  audience: 'api',
  typ: 'at+jwt',
});
check('jwtVerify at+jwt', payload.client_id === clientId && protectedHeader.alg === 'ES256');

// A refresh token from the password grant (first-party client), then rotated by openid-client.
const basic = 'Basic ' + Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
const login = await fetch(`${issuer}/oauth2/token`, {
  method: 'POST',
  headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'password', username, password }),
}).then((r) => r.json());
check('password grant', typeof login.refresh_token === 'string', JSON.stringify(login));
const refreshed = await client.refreshTokenGrant(config, login.refresh_token);
check('refresh', refreshed.refresh_token && refreshed.refresh_token !== login.refresh_token);

const active = await client.tokenIntrospection(config, refreshed.access_token);
check('introspection active', active.active === true && active.client_id === clientId, JSON.stringify(active));
await client.tokenRevocation(config, refreshed.access_token);
const revoked = await client.tokenIntrospection(config, refreshed.access_token);
check('revocation then introspection', revoked.active === false, JSON.stringify(revoked));
await client.tokenRevocation(config, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
let refused = false;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
} catch (e) {
  refused = e.error === 'invalid_grant';
}
check('revoked refresh token refused with invalid_grant', refused);

// A token signed by another key is refused by jose against our JWKS.
const { privateKey } = await jose.generateKeyPair('ES256');
const forged = await new jose.SignJWT({ client_id: clientId })
  .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: protectedHeader.kid })
  .setIssuer(issuer).setAudience('api').setExpirationTime('5m').sign(privateKey);
let forgedRefused = false;
try {
  await jose.jwtVerify(forged, jwks, { issuer, audience: 'api', typ: 'at+jwt' });
} catch {
  forgedRefused = true;
}
check('forged token refused', forgedRefused);

console.log(`server interop (node): ${9 - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
