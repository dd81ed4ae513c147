// The authorization code flow in a real browser (headless Debian Chromium driven by playwright-core): a user signs
// in on the server's page, consents, the client's callback receives the code, the code is exchanged with its
// PKCE verifier, and the tokens verify. Then the refusals a browser sees: a wrong password, a form whose CSRF
// token was tampered with, and a redirect URI the client never registered. Screenshots of the pages (desktop and
// phone sizes) are saved as test artifacts.
// Usage: node browser.mjs ISSUER CLIENT_ID CALLBACK_PORT USERNAME PASSWORD ARTIFACT_DIR
import http from 'node:http';
import { mkdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';
import * as jose from 'jose';

const [issuer, clientId, callbackPort, username, password, artifacts] = process.argv.slice(2);
mkdirSync(artifacts, { recursive: true });
let failures = 0;
const check = (name, ok, detail = '') => {
  console.log(`browser ${name}: ${ok ? 'ok' : 'FAILED ' + detail}`);
  if (!ok) failures++;
};

// The client's callback: it only records what arrives.
const redirectUri = `http://127.0.0.1:${callbackPort}/callback`;
const arrived = [];
const callback = http.createServer((req, res) => {
  arrived.push(new URL(req.url, redirectUri));
  res.writeHead(200, { 'content-type': 'text/plain' }).end('callback reached');
});
await new Promise((resolve) => callback.listen(Number(callbackPort), '127.0.0.1', resolve));

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');
const verifier = b64url(randomBytes(32));
const challenge = b64url(createHash('sha256').update(verifier).digest());
const authUrl = (overrides = {}) => {
  const params = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope: 'openid read', state: 'st-1',
    nonce: 'n-1', code_challenge: challenge, code_challenge_method: 'S256', ...overrides,
  });
  return `${issuer}/oauth2/authorize?${params}`;
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  // The happy path, at a desktop size.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(authUrl());
  await page.screenshot({ path: `${artifacts}/login-desktop.png` });
  check('the login page', (await page.title()) === 'Sign in' && await page.isVisible('input#username'));
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('text=Allow access?').catch(async (e) => {
    await page.screenshot({ path: `${artifacts}/unexpected.png` });
    console.log(`browser: after signing in the page says: ${(await page.textContent('body'))?.trim()}`);
    throw e;
  });
  await page.screenshot({ path: `${artifacts}/consent-desktop.png` });
  check('the consent page names the scopes', await page.isVisible('text=Read your data'));
  await Promise.all([page.waitForURL(`${redirectUri}**`), page.click('button[value=approve]')]);
  const back = arrived.filter((u) => u.pathname === '/callback').at(-1); // the browser may also ask for /favicon.ico
  check('the callback gets a code, the state and the issuer', back?.searchParams.get('state') === 'st-1'
    && back?.searchParams.get('iss') === issuer && !!back?.searchParams.get('code'), back?.href);
  const response = await fetch(`${issuer}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: back.searchParams.get('code'), redirect_uri: redirectUri,
      client_id: clientId, code_verifier: verifier,
    }),
  });
  const tokens = await response.json();
  const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/jwks.json`));
  const { payload: access } = await jose.jwtVerify(tokens.access_token, jwks, { issuer, audience: 'api', typ: 'at+jwt' });
  const { payload: id } = await jose.jwtVerify(tokens.id_token, jwks, { issuer, audience: clientId, typ: 'JWT' });
  check('the tokens verify', response.status === 200 && access.scope === 'openid read' && id.nonce === 'n-1'
    && id.sub === access.sub, JSON.stringify(tokens));
  await context.close();

  // The same pages at a phone's size, for the record.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true });
  const small = await phone.newPage();
  await small.goto(authUrl({ state: 'st-phone', prompt: 'consent' })); // consent was given above: ask again
  await small.screenshot({ path: `${artifacts}/login-phone.png` });
  const fits = await small.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  check('the login page fits a phone without sideways scrolling', fits);
  await small.fill('#username', username);
  await small.fill('#password', password);
  await small.click('button[type=submit]');
  await small.waitForSelector('text=Allow access?');
  await small.screenshot({ path: `${artifacts}/consent-phone.png` });
  await phone.close();

  // A wrong password: the login page again, with the reason, and no way past it.
  const wrong = await browser.newContext();
  const w = await wrong.newPage();
  await w.goto(authUrl({ state: 'st-wrong' }));
  await w.fill('#username', username);
  await w.fill('#password', 'not the password');
  await w.click('button[type=submit]');
  await w.waitForSelector('text=Wrong username or password.');
  await w.screenshot({ path: `${artifacts}/login-wrong-password.png` });
  check('a wrong password is refused on the page', (await w.title()) === 'Sign in' && arrived.every((u) => u.searchParams.get('state') !== 'st-wrong'));
  await wrong.close();

  // A CSRF mismatch: the form's token no longer matches the cookie (as in a form forged elsewhere).
  const forged = await browser.newContext({ bypassCSP: true });
  const f = await forged.newPage();
  await f.goto(authUrl({ state: 'st-csrf' }));
  await f.evaluate(() => { document.querySelector('input[name=csrf]').value = 'AAAAAAAAAAAAAAAA'; });
  await f.fill('#username', username);
  await f.fill('#password', password);
  const [csrfResponse] = await Promise.all([f.waitForNavigation(), f.click('button[type=submit]')]);
  check('a CSRF mismatch is refused', csrfResponse.status() === 403 && await f.isVisible('text=This form has expired'),
    String(csrfResponse.status()));
  await forged.close();

  // A redirect URI the client never registered: an error page on the server, and the browser goes nowhere.
  const tampered = await browser.newContext();
  const t = await tampered.newPage();
  const evil = authUrl({ redirect_uri: `http://127.0.0.1:${callbackPort}/evil` });
  const tamperedResponse = await t.goto(evil);
  await t.screenshot({ path: `${artifacts}/error-redirect-uri.png` });
  check('a tampered redirect_uri is shown an error, never followed', tamperedResponse.status() === 400
    && t.url().startsWith(issuer) && arrived.every((u) => u.pathname !== '/evil'), t.url());
  await tampered.close();
} finally {
  await browser.close();
  callback.close();
}
console.log(`browser: ${8 - failures} passed, ${failures} failed (screenshots in ${artifacts})`);
process.exit(failures === 0 ? 0 : 1);
