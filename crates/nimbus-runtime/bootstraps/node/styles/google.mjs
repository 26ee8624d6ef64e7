// Google Cloud Functions Node adapter (what @google-cloud/functions-framework
// does with Express). The handler is the function target: a name registered
// with functions.http / functions.cloudEvent, or an export of the source
// (package.json `main`, else index.js, else function.js); `file.target` names
// the file explicitly. HTTP functions get Express-like (req, res); CloudEvent
// functions get the event (binary or structured mode) and answer 204.
// Unhandled errors answer 500 with `X-Google-Status: crash`.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  StyleHandlerNotFound, enableShims, shim, loadFile, resolveFile, httpIn, httpOut, headerObject,
  fullUrl, crash, parseCookieOptions,
} from './common.mjs';

function sourceFile(taskRoot) {
  const src = process.env.FUNCTION_SOURCE ? path.resolve(taskRoot, process.env.FUNCTION_SOURCE) : taskRoot;
  try {
    const main = JSON.parse(fs.readFileSync(path.join(src, 'package.json'), 'utf8')).main;
    if (main) {
      const f = resolveFile(path.resolve(src, main));
      if (f) return f;
    }
  } catch { /* no package.json */ }
  return resolveFile(path.join(src, 'index')) || resolveFile(path.join(src, 'function')) ||
    resolveFile(src);
}

function registered(taskRoot, target) {
  const own = shim('@google-cloud/functions-framework').getRegisteredFunction(target);
  if (own) return own;
  try { // a vendored real framework keeps its own registry
    const req = createRequire(path.join(taskRoot, 'noop.js'));
    const reg = req(req.resolve('@google-cloud/functions-framework/build/src/function_registry', { paths: [taskRoot] }));
    return reg.getRegisteredFunction ? reg.getRegisteredFunction(target) : undefined;
  } catch {
    return undefined;
  }
}

export async function load(taskRoot, handler) {
  enableShims(false);
  let file;
  let target = handler;
  const dot = handler.lastIndexOf('.');
  if (dot > 0 && !handler.slice(0, dot).includes('..')) {
    file = resolveFile(path.resolve(taskRoot, handler.slice(0, dot)));
    target = handler.slice(dot + 1);
  } else {
    file = sourceFile(taskRoot);
  }
  if (!file) {
    const e = new Error(`Cannot find the function source for '${handler}' (package.json main, index.js or function.js)`);
    e.code = 'MODULE_NOT_FOUND';
    throw e;
  }
  let mod = await loadFile(file);
  let entry = registered(taskRoot, target);
  if (!entry) {
    if (mod && mod[Symbol.toStringTag] === 'Module' && typeof mod[target] !== 'function' && mod.default) mod = mod.default;
    const fn = mod && mod[target];
    if (typeof fn !== 'function') {
      throw new StyleHandlerNotFound(`Function '${target}' is not defined in the provided module (${path.basename(file)}) and was not registered with functions.http/cloudEvent`);
    }
    const sig = (process.env.FUNCTION_SIGNATURE_TYPE || 'http').toLowerCase();
    entry = { userFunction: fn, signatureType: sig };
  }
  if (entry.signatureType === 'cloudevent') return cloudEventHandler(entry.userFunction);
  if (entry.signatureType !== 'http') {
    throw new StyleHandlerNotFound(`signature type '${entry.signatureType}' is not supported (http or cloudevent)`);
  }
  return httpHandler(entry.userFunction);
}

const IGNORED = new Set(['/favicon.ico', '/robots.txt']);
const CRASH = [['X-Google-Status', 'crash'], ['Content-Type', 'text/plain; charset=utf-8']];

function httpHandler(fn) {
  return async (event) => {
    const r = httpIn(event);
    if (IGNORED.has(r.path)) return httpOut(r, 404, [['Content-Type', 'text/plain']], 'Not Found');
    let req;
    try {
      req = expressRequest(r);
    } catch (err) {
      return httpOut(r, err.status || 400, [['Content-Type', 'text/plain; charset=utf-8']], err.message);
    }
    const res = new ExpressResponse(r);
    try {
      const ret = fn(req, res);
      if (ret && typeof ret.then === 'function') {
        await Promise.race([ret.then(() => res.finished), res.finished]);
      } else {
        await res.finished;
      }
      return res.toProxy();
    } catch (err) {
      if (res.done) return res.toProxy();
      return crash(r, err, 500, CRASH, err && err.message !== undefined ? String(err.message) : String(err));
    }
  };
}

// body-parser rules of the framework: JSON (and cloudevents+json), text,
// urlencoded; anything else as a raw Buffer. No body: {}.
function parseBody(r, ctype) {
  if (!r.body.length) return {};
  const mt = ctype.split(';')[0].trim().toLowerCase();
  if (mt === 'application/json' || mt.endsWith('+json')) {
    try {
      return JSON.parse(r.body.toString('utf8'));
    } catch (e) {
      const err = new Error(`Bad Request: ${e.message}`);
      err.status = 400;
      throw err;
    }
  }
  if (mt.startsWith('text/')) return r.body.toString('utf8');
  if (mt === 'application/x-www-form-urlencoded') return queryObject(r.body.toString('utf8'));
  return Buffer.from(r.body);
}

function queryObject(qs) {
  const out = {};
  for (const [k, v] of new URLSearchParams(qs)) {
    if (out[k] === undefined) out[k] = v;
    else if (Array.isArray(out[k])) out[k].push(v);
    else out[k] = [out[k], v];
  }
  return out;
}

function expressRequest(r) {
  const headers = headerObject(r);
  const ctype = headers['content-type'] || '';
  const url = r.path + (r.rawQuery ? '?' + r.rawQuery : '');
  const full = new URL(fullUrl(r));
  const req = {
    method: r.method,
    url,
    originalUrl: url,
    baseUrl: '',
    path: r.path,
    headers,
    rawHeaders: r.headers.flat(),
    query: queryObject(r.rawQuery),
    params: { ...r.pathParams },
    body: parseBody(r, ctype),
    rawBody: Buffer.from(r.body),
    ip: r.sourceIp,
    ips: [],
    hostname: full.hostname,
    host: full.host,
    protocol: full.protocol.replace(':', ''),
    secure: full.protocol === 'https:',
    xhr: (headers['x-requested-with'] || '').toLowerCase() === 'xmlhttprequest',
    cookies: Object.fromEntries((headers.cookie || '').split(';').map((p) => p.trim()).filter(Boolean)
      .map((p) => { const i = p.indexOf('='); return [p.slice(0, i), decodeURIComponent(p.slice(i + 1))]; })),
    get(name) {
      const n = String(name).toLowerCase();
      if (n === 'referer' || n === 'referrer') return headers.referer || headers.referrer;
      return headers[n];
    },
    is(type) {
      const mt = ctype.split(';')[0].trim().toLowerCase();
      if (!mt) return null;
      const t = String(type).toLowerCase();
      if (t === mt || (t.includes('/') && t.endsWith('/*') && mt.startsWith(t.slice(0, -1)))) return mt;
      if (!t.includes('/') && (mt.endsWith('/' + t) || mt.endsWith('+' + t))) return t;
      return false;
    },
  };
  req.header = req.get;
  return req;
}

const STATUS_TEXT = { 200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

class ExpressResponse {
  constructor(r) {
    this._r = r;
    this.statusCode = 200;
    this._headers = new Map(); // lower name -> [name, value | value[]]
    this._chunks = [];
    this.done = false;
    this.locals = {};
    this.finished = new Promise((resolve) => { this._finish = resolve; });
  }
  get headersSent() { return this.done; }
  status(code) { this.statusCode = Number(code); return this; }
  set(field, value) {
    if (typeof field === 'object') { for (const [k, v] of Object.entries(field)) this.set(k, v); return this; }
    if (String(field).toLowerCase() === 'content-type' && !String(value).includes('/')) value = mimeOf(value);
    this._headers.set(String(field).toLowerCase(), [field, Array.isArray(value) ? value.map(String) : String(value)]);
    return this;
  }
  header(f, v) { return this.set(f, v); }
  setHeader(f, v) { this._headers.set(String(f).toLowerCase(), [f, v]); return this; }
  get(field) { const h = this._headers.get(String(field).toLowerCase()); return h && h[1]; }
  getHeader(f) { return this.get(f); }
  getHeaders() { return Object.fromEntries([...this._headers.values()].map(([k, v]) => [k.toLowerCase(), v])); }
  hasHeader(f) { return this._headers.has(String(f).toLowerCase()); }
  removeHeader(f) { this._headers.delete(String(f).toLowerCase()); }
  append(field, value) {
    const prev = this.get(field);
    const vals = [].concat(prev === undefined ? [] : prev, value);
    return this.set(field, vals.length === 1 ? vals[0] : vals);
  }
  type(t) { return this.set('Content-Type', String(t).includes('/') ? t : mimeOf(t)); }
  contentType(t) { return this.type(t); }
  location(url) { return this.set('Location', url); }
  links() { return this; }
  vary(f) { return this.append('Vary', f); }
  cookie(name, value, options = {}) {
    const v = typeof value === 'object' ? 'j:' + JSON.stringify(value) : String(value);
    return this.append('Set-Cookie', parseCookieOptions(name, v, options));
  }
  clearCookie(name, options = {}) {
    return this.cookie(name, '', { ...options, expires: new Date(1) });
  }
  writeHead(code, a, b) {
    this.statusCode = code;
    const headers = typeof a === 'string' ? b : a;
    if (headers) for (const [k, v] of Object.entries(headers)) this.setHeader(k, v);
    return this;
  }
  write(chunk, encoding) {
    if (chunk !== undefined && chunk !== null) this._chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8'));
    return true;
  }
  end(chunk, encoding) {
    if (typeof chunk === 'function') chunk = undefined;
    this.write(chunk, encoding);
    this.done = true;
    this._finish();
    return this;
  }
  send(body) {
    if (typeof body === 'number' && arguments.length === 1) { this.statusCode = body; body = STATUS_TEXT[body] || String(body); }
    if (body === undefined || body === null) return this.end();
    if (typeof body === 'string') {
      if (!this.hasHeader('content-type')) this.set('Content-Type', 'text/html; charset=utf-8');
      return this.end(body);
    }
    if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
      if (!this.hasHeader('content-type')) this.set('Content-Type', 'application/octet-stream');
      return this.end(Buffer.from(body));
    }
    if (typeof body === 'boolean' || typeof body === 'object' || typeof body === 'number') return this.json(body);
    return this.end(String(body));
  }
  json(obj) {
    if (!this.hasHeader('content-type')) this.set('Content-Type', 'application/json; charset=utf-8');
    return this.end(JSON.stringify(obj === undefined ? null : obj));
  }
  jsonp(obj) { return this.json(obj); }
  sendStatus(code) {
    this.statusCode = code;
    this.set('Content-Type', 'text/plain; charset=utf-8');
    return this.end(STATUS_TEXT[code] || String(code));
  }
  redirect(a, b) {
    const [code, url] = b === undefined ? [302, a] : [a, b];
    this.statusCode = code;
    this.location(url);
    return this.end(`Found. Redirecting to ${url}`);
  }
  on() { return this; }
  once() { return this; }
  toProxy() {
    const headers = [];
    for (const [name, v] of this._headers.values()) {
      for (const one of Array.isArray(v) ? v : [v]) headers.push([name, one]);
    }
    const body = Buffer.concat(this._chunks);
    return httpOut(this._r, this.statusCode, headers, body);
  }
}

function mimeOf(t) {
  const m = { html: 'text/html; charset=utf-8', text: 'text/plain; charset=utf-8', txt: 'text/plain; charset=utf-8',
    json: 'application/json; charset=utf-8', xml: 'application/xml', js: 'application/javascript', png: 'image/png',
    bin: 'application/octet-stream' };
  return m[String(t).replace(/^\./, '').toLowerCase()] || 'application/octet-stream';
}

// CloudEvents: binary mode (ce-* headers) or structured (application/cloudevents+json).
function cloudEventOf(r) {
  if (r.version === null && r.raw && typeof r.raw === 'object' && r.raw.specversion) return { ...r.raw };
  const headers = headerObject(r);
  const ctype = headers['content-type'] || '';
  let ce;
  if (ctype.toLowerCase().startsWith('application/cloudevents')) {
    try { ce = JSON.parse(r.body.toString('utf8')); } catch { return null; }
    if (ce && ce.data_base64 !== undefined) { ce.data = Buffer.from(ce.data_base64, 'base64'); delete ce.data_base64; }
  } else {
    ce = {};
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith('ce-')) ce[k.slice(3)] = decodeURIComponent(v);
    }
    if (ctype) ce.datacontenttype = ctype;
    const mt = ctype.split(';')[0].trim().toLowerCase();
    if (r.body.length) {
      if (mt === 'application/json' || mt.endsWith('+json')) {
        try { ce.data = JSON.parse(r.body.toString('utf8')); } catch { return null; }
      } else if (mt.startsWith('text/')) ce.data = r.body.toString('utf8');
      else ce.data = Buffer.from(r.body);
    }
  }
  if (!ce || !['id', 'source', 'specversion', 'type'].every((k) => ce[k])) return null;
  return ce;
}

function cloudEventHandler(fn) {
  return async (event) => {
    const r = httpIn(event);
    const ce = cloudEventOf(r);
    if (!ce) return httpOut(r, 400, [['Content-Type', 'text/plain; charset=utf-8']], 'Bad Request: the request is not a valid CloudEvent');
    try {
      const result = fn.length >= 2
        ? await new Promise((resolve, reject) => {
          const ret = fn(ce, (err, v) => (err ? reject(err) : resolve(v)));
          if (ret && typeof ret.then === 'function') ret.then(resolve, reject);
        })
        : await fn(ce);
      if (result === undefined || result === null) return httpOut(r, 204, [], '');
      if (typeof result === 'string') return httpOut(r, 200, [['Content-Type', 'text/html; charset=utf-8']], result);
      return httpOut(r, 200, [['Content-Type', 'application/json; charset=utf-8']], JSON.stringify(result));
    } catch (err) {
      return crash(r, err, 500, [['X-Google-Status', 'error']], '');
    }
  };
}
