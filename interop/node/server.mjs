// Drives a running Portcullis server with npm openid-client (discovery, client_credentials, refresh,
// introspection, revocation, and DPoP: bound tokens from client_credentials, the password grant and refresh,
// the server's nonce retried, a protected resource reached through the gateway) and npm jose
// (createRemoteJWKSet + jwtVerify with typ at+jwt), unchanged.
// Usage: node server.mjs ISSUER CLIENT_ID CLIENT_SECRET USERNAME PASSWORD GATEWAY_URL
import * as client from 'openid-client';
import * as jose from 'jose';

const [issuer, clientId, clientSecret, username, password, gateway] = process.argv.slice(2);
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

// DPoP (RFC 9449). The server demands nonces: openid-client retries each first request with the one it is given.
const dpopKeys = await client.randomDPoPKeyPair('ES256');
const DPoP = client.getDPoPHandle(config, dpopKeys);
const thumbprint = await jose.calculateJwkThumbprint(await jose.exportJWK(dpopKeys.publicKey));
const bound = await client.clientCredentialsGrant(config, { scope: 'read' }, { DPoP });
check('DPoP client_credentials', bound.token_type.toLowerCase() === 'dpop', JSON.stringify(bound));
const { payload: boundClaims } = await jose.jwtVerify(bound.access_token, jwks, { issuer, audience: 'api', typ: 'at+jwt' });
check('DPoP cnf.jkt is the key thumbprint', boundClaims.cnf?.jkt === thumbprint, JSON.stringify(boundClaims.cnf));
const boundIntro = await client.tokenIntrospection(config, bound.access_token);
check('DPoP introspection cnf', boundIntro.cnf?.jkt === thumbprint && boundIntro.token_type === 'DPoP',
  JSON.stringify(boundIntro));
const pw = await client.genericGrantRequest(config, 'password', { username, password, scope: 'read' }, { DPoP });
const pwRefreshed = await client.refreshTokenGrant(config, pw.refresh_token, undefined, { DPoP });
check('DPoP password grant and refresh', pw.token_type.toLowerCase() === 'dpop'
  && pwRefreshed.token_type.toLowerCase() === 'dpop' && pwRefreshed.refresh_token !== pw.refresh_token,
  JSON.stringify(pwRefreshed));

// Through the gateway, which demands nonces of its own (openid-client retries with the one it is given): the
// bound token with a proof of its key reaches the API; as Bearer, or with another key's proof, it is refused.
const resource = new URL(`${gateway}/api/hello`);
const viaGateway = await client.fetchProtectedResource(config, bound.access_token, resource, 'GET', undefined, undefined,
  { DPoP });
check('DPoP through the gateway', viaGateway.status === 200 && (await viaGateway.text()) === 'hello',
  String(viaGateway.status));
const gatewayMetrics = await fetch(`${gateway}/metrics`).then((r) => r.text());
check('the gateway asked for its nonce first', gatewayMetrics.includes('reason="nonce required"'));
const asBearer = await fetch(resource, { headers: { authorization: `Bearer ${bound.access_token}` } });
check('bound token as Bearer refused by the gateway', asBearer.status === 401, String(asBearer.status));
const thiefDPoP = client.getDPoPHandle(config, await client.randomDPoPKeyPair('ES256'));
let thiefStatus;
try {
  thiefStatus = (await client.fetchProtectedResource(config, bound.access_token, resource, 'GET', undefined, undefined,
    { DPoP: thiefDPoP })).status;
} catch (e) {
  thiefStatus = e.response?.status ?? e.cause?.status ?? 'error';
}
check('another key\'s proof refused by the gateway', thiefStatus === 401, String(thiefStatus));

console.log(`server interop (node): ${17 - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
