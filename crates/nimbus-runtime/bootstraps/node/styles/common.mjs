// Shared parts of Nimbus's handler-style adapters (Node). Loaded by bootstrap.mjs
// only when NIMBUS_HANDLER_STYLE is azure or google; Lambda functions never load it.
//
// An adapter turns the user's function into a Lambda handler: it receives an API
// Gateway proxy event (payload 1.0 or 2.0, built by the Nimbus gateway) and
// resolves to an API Gateway proxy response.

import fs from 'node:fs';
import path from 'node:path';
import Module, { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const SHIMS = path.join(HERE, '..', 'shims', 'node_modules');
const SHIM_NAMES = ['@azure/functions', '@google-cloud/functions-framework'];

export class StyleHandlerNotFound extends Error {}

let shimsOn = false;
// Makes Nimbus's shim packages resolvable after the package's own node_modules
// (CommonJS through NODE_PATH's list, ES modules through a resolve hook).
export function enableShims(esm) {
  if (!shimsOn) {
    shimsOn = true;
    const before = process.env.NODE_PATH;
    process.env.NODE_PATH = before ? `${before}${path.delimiter}${SHIMS}` : SHIMS;
    Module._initPaths();
    if (before === undefined) delete process.env.NODE_PATH;
    else process.env.NODE_PATH = before;
  }
  if (esm && !enableShims.esm && typeof Module.register === 'function') {
    enableShims.esm = true;
    const targets = Object.fromEntries(SHIM_NAMES.map((n) =>
      [n, pathToFileURL(path.join(SHIMS, n, 'index.js')).href]));
    const hook = `const T = ${JSON.stringify(targets)};
export async function resolve(s, c, next) {
  try { return await next(s, c); } catch (e) {
    if (Object.hasOwn(T, s)) return { url: T[s], shortCircuit: true, format: 'commonjs' };
    throw e;
  }
}`;
    Module.register('data:text/javascript,' + encodeURIComponent(hook));
  }
}

// The shim module itself (the same instance user code gets from require()).
export function shim(name) {
  return createRequire(import.meta.url)(path.join(SHIMS, name, 'index.js'));
}

export function isEsmFile(file) {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  let dir = path.dirname(file);
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try { return JSON.parse(fs.readFileSync(pj, 'utf8')).type === 'module'; } catch { return false; }
    }
    const up = path.dirname(dir);
    if (up === dir) return false;
    dir = up;
  }
}

// Loads a user file as CommonJS or ESM; ESM namespaces with only a default
// export are unwrapped like CommonJS module.exports.
export async function loadFile(file) {
  if (isEsmFile(file)) {
    enableShims(true);
    return await import(pathToFileURL(file).href);
  }
  return createRequire(file)(file);
}

// file, file.js, file.mjs, file.cjs, file/index.js (as the Lambda loader).
export function resolveFile(base) {
  for (const c of [base, base + '.js', base + '.mjs', base + '.cjs', path.join(base, 'index.js')]) {
    try { if (fs.statSync(c).isFile()) return c; } catch { /* next */ }
  }
  return null;
}

// The HTTP request an API Gateway event describes. Any other event becomes a
// POST of its JSON to `/` (so `nimbus invoke` works on styled functions).
export function httpIn(event) {
  const r = { version: null, method: 'POST', path: '/', rawQuery: '', headers: [], body: Buffer.alloc(0),
    pathParams: {}, sourceIp: '', raw: event };
  const isV2 = event && event.version === '2.0' && typeof event.rawPath === 'string';
  if (!event || typeof event !== 'object' || !(isV2 || event.httpMethod)) {
    r.headers = [['content-type', 'application/json']];
    r.body = Buffer.from(JSON.stringify(event === undefined ? null : event));
    return r;
  }
  const ctx = event.requestContext || {};
  if (isV2) {
    r.version = '2.0';
    r.method = ((ctx.http && ctx.http.method) || 'GET').toUpperCase();
    r.path = event.rawPath || '/';
    r.rawQuery = event.rawQueryString || '';
    for (const [k, v] of Object.entries(event.headers || {})) {
      if (k.toLowerCase() !== 'cookie' || !event.cookies) r.headers.push([k.toLowerCase(), String(v)]);
    }
    if (Array.isArray(event.cookies) && event.cookies.length) r.headers.push(['cookie', event.cookies.join('; ')]);
    r.sourceIp = (ctx.http && ctx.http.sourceIp) || '';
  } else {
    r.version = '1.0';
    r.method = String(event.httpMethod || 'GET').toUpperCase();
    r.path = event.path || '/';
    const q = new URLSearchParams();
    const mq = event.multiValueQueryStringParameters;
    if (mq) for (const [k, vs] of Object.entries(mq)) for (const v of vs || []) q.append(k, v);
    else for (const [k, v] of Object.entries(event.queryStringParameters || {})) q.append(k, v);
    r.rawQuery = q.toString();
    const mh = event.multiValueHeaders;
    if (mh) for (const [k, vs] of Object.entries(mh)) for (const v of vs || []) r.headers.push([k.toLowerCase(), String(v)]);
    else for (const [k, v] of Object.entries(event.headers || {})) r.headers.push([k.toLowerCase(), String(v)]);
    r.sourceIp = (ctx.identity && ctx.identity.sourceIp) || '';
  }
  r.pathParams = { ...(event.pathParameters || {}) };
  if (event.body !== undefined && event.body !== null) {
    r.body = event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(String(event.body), 'utf8');
  }
  return r;
}

export function header(r, name) {
  name = name.toLowerCase();
  const vs = r.headers.filter(([k]) => k === name).map(([, v]) => v);
  return vs.length ? vs.join(', ') : undefined;
}

export function headerObject(r) {
  const o = {};
  for (const [k, v] of r.headers) o[k] = o[k] === undefined ? v : `${o[k]}, ${v}`;
  return o;
}

export function fullUrl(r) {
  const proto = header(r, 'x-forwarded-proto') || 'http';
  const host = header(r, 'host') || 'localhost';
  return `${proto}://${host}${r.path}${r.rawQuery ? '?' + r.rawQuery : ''}`;
}

const TEXTUAL = /^(text\/|application\/(json|xml|javascript)|[^;]*\+json)/i;

// API Gateway proxy response for r's payload format. headers: [[name, value]].
export function httpOut(r, status, headers, body) {
  let ctype = '';
  for (const [k, v] of headers) if (k.toLowerCase() === 'content-type') ctype = String(v);
  let text;
  let b64 = false;
  if (body === undefined || body === null) text = '';
  else if (typeof body === 'string') text = body;
  else {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer ? new Uint8Array(body.buffer, body.byteOffset, body.byteLength) : body);
    const utf8 = buf.toString('utf8');
    if ((!ctype || TEXTUAL.test(ctype)) && Buffer.byteLength(utf8) === buf.length && !utf8.includes('\uFFFD')) text = utf8;
    else { text = buf.toString('base64'); b64 = true; }
  }
  const out = { statusCode: Number(status) || 200, body: text, isBase64Encoded: b64 };
  const single = {};
  const multi = {};
  const cookies = [];
  for (const [k, v0] of headers) {
    const v = String(v0);
    if (k.toLowerCase() === 'set-cookie') cookies.push(v);
    (multi[k] ||= []).push(v);
    single[k] = single[k] === undefined ? v : `${single[k]}, ${v}`;
  }
  if (r.version === '1.0') {
    out.headers = {};
    out.multiValueHeaders = multi;
  } else {
    for (const k of Object.keys(single)) if (k.toLowerCase() === 'set-cookie') delete single[k];
    out.headers = single;
    if (cookies.length) out.cookies = cookies;
  }
  return out;
}

// Unhandled error in user code: logged, answered like the cloud does.
export function crash(r, err, status, headers, body) {
  console.error(err && err.stack ? err.stack : String(err));
  return httpOut(r, status, headers, body);
}

export function parseCookieOptions(name, value, o = {}) {
  let s = `${name}=${encodeURIComponent(value)}`;
  if (o.maxAge !== undefined) s += `; Max-Age=${Math.floor(o.maxAge / (o.maxAgeSeconds ? 1 : 1000))}`;
  if (o.domain) s += `; Domain=${o.domain}`;
  s += `; Path=${o.path || '/'}`;
  if (o.expires) s += `; Expires=${new Date(o.expires).toUTCString()}`;
  if (o.httpOnly) s += '; HttpOnly';
  if (o.secure) s += '; Secure';
  if (o.sameSite) s += `; SameSite=${o.sameSite === true ? 'Strict' : o.sameSite}`;
  return s;
}
