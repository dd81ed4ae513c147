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
// The authorization code flow with PKCE, an ID token and DPoP (dpop_jkt binds the code), the login and consent
// forms driven over HTTP as a browser would; then a refresh with DPoP.
{
  const redirectUri = 'http://127.0.0.1:9/callback';
  const web = await client.discovery(new URL(issuer), 'interop-web', undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  });
  const webKeys = await client.randomDPoPKeyPair('ES256');
  const webDPoP = client.getDPoPHandle(web, webKeys);
  const webThumbprint = await jose.calculateJwkThumbprint(await jose.exportJWK(webKeys.publicKey));
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(web, {
    redirect_uri: redirectUri, scope: 'openid read', state, nonce, dpop_jkt: webThumbprint,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
  });
  const cookies = new Map();
  const browse = async (url, form) => {
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET', redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      body: form ? new URLSearchParams(form) : undefined,
    });
    for (const c of response.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      cookies.set(pair.slice(0, i), pair.slice(i + 1));
    }
    return { status: response.status, location: response.headers.get('location'), html: await response.text() };
  };
  const hidden = (html) => Object.fromEntries([...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)]
    .map(([, k, v]) => [k, v.replaceAll('&amp;', '&').replaceAll('&quot;', '"')]));
  const loginPage = await browse(authUrl);
  const consentPage = await browse(`${issuer}/oauth2/authorize`, { ...hidden(loginPage.html), username, password });
  const back = await browse(`${issuer}/oauth2/authorize`, { ...hidden(consentPage.html), action: 'approve' });
  check('login and consent pages lead back with a code', back.status === 303 && back.location?.startsWith(redirectUri),
    `${loginPage.status} ${consentPage.status} ${back.status}`);
  const codeTokens = await client.authorizationCodeGrant(web, new URL(back.location), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  }, undefined, { DPoP: webDPoP });
  const idClaims = codeTokens.claims();
  check('authorization code + PKCE + ID token', codeTokens.token_type.toLowerCase() === 'dpop'
    && idClaims?.nonce === nonce && idClaims?.aud === 'interop-web', JSON.stringify(idClaims));
  const { payload: codeClaims } = await jose.jwtVerify(codeTokens.access_token, jwks, { issuer, audience: 'api', typ: 'at+jwt' });
  check('the code\'s access token is bound to the client\'s key', codeClaims.cnf?.jkt === webThumbprint);
  const webRefreshed = await client.refreshTokenGrant(web, codeTokens.refresh_token, undefined, { DPoP: webDPoP });
  check('DPoP refresh of a public client', webRefreshed.token_type.toLowerCase() === 'dpop', JSON.stringify(webRefreshed));
  let stolenRefused = false;
  try {
    const thief = client.getDPoPHandle(web, await client.randomDPoPKeyPair('ES256'));
    await client.refreshTokenGrant(web, webRefreshed.refresh_token, undefined, { DPoP: thief });
  } catch (e) {
    stolenRefused = e.error === 'invalid_dpop_proof';
  }
  check('a public client\'s refresh token is useless with another key', stolenRefused);

  // userinfo with the DPoP-bound access token (openid-client signs the proof), then RP-initiated logout.
  const info = await client.fetchUserInfo(web, webRefreshed.access_token, idClaims.sub, { DPoP: webDPoP });
  check('userinfo', info.sub === idClaims.sub && info.preferred_username === username, JSON.stringify(info));
  const logoutUrl = client.buildEndSessionUrl(web, {
    id_token_hint: codeTokens.id_token, post_logout_redirect_uri: redirectUri, state: 'bye',
  });
  const loggedOut = await browse(logoutUrl.href);
  const again = await browse(authUrl.href.replace(/state=[^&]+/, 'state=again'));
  check('RP-initiated logout ends the browser session', loggedOut.status === 303
    && loggedOut.location === `${redirectUri}?state=bye` && again.status === 200 && again.html.includes('Sign in'),
    `${loggedOut.status} ${loggedOut.location} ${again.status}`);
}

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

console.log(`server interop (node): ${24 - failures} passed, ${failures} failed`);
process.exit(failures === 0 ? 0 : 1);
