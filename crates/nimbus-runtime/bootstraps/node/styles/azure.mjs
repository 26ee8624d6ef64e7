// Azure Functions Node adapter. The handler names the function:
//   * v3 (classic): a folder `<handler>/function.json` beside its script
//     (`module.exports = async function (context, req) {...}`, `context.res`,
//     `context.done`, `$return`);
//   * v4: a name registered with `app.http(name, {handler})` by the files that
//     package.json `main` names (a file or a glob), handler(request, context)
//     returning an HttpResponseInit / HttpResponse.
// Unhandled errors answer 500, as the Functions host does.

import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  StyleHandlerNotFound, enableShims, shim, loadFile, httpIn, httpOut, header, headerObject,
  fullUrl, crash, parseCookieOptions,
} from './common.mjs';

export async function load(taskRoot, handler) {
  enableShims(false);
  const folder = path.join(taskRoot, handler);
  if (fs.existsSync(path.join(folder, 'function.json'))) return loadV3(folder, handler);
  return loadV4(taskRoot, handler);
}

// ---------------------------------------------------------------------------
// v3

async function loadV3(folder, name) {
  const meta = JSON.parse(fs.readFileSync(path.join(folder, 'function.json'), 'utf8'));
  let script = meta.scriptFile ? path.resolve(folder, meta.scriptFile) : null;
  if (!script) {
    script = ['index.js', 'index.mjs', 'index.cjs'].map((f) => path.join(folder, f)).find((f) => fs.existsSync(f));
  }
  if (!script || !fs.existsSync(script)) {
    throw new StyleHandlerNotFound(`function ${name}: script file ${meta.scriptFile || 'index.js'} not found`);
  }
  let mod = await loadFile(script);
  if (mod && typeof mod === 'object' && mod[Symbol.toStringTag] === 'Module' && mod.default !== undefined &&
      (typeof mod.default === 'function' || Object.keys(mod).length === 1)) mod = mod.default;
  let fn;
  if (typeof mod === 'function') fn = mod;
  else if (mod && meta.entryPoint) fn = mod[meta.entryPoint];
  else if (mod) {
    const fns = Object.keys(mod).filter((k) => typeof mod[k] === 'function');
    fn = fns.length === 1 ? mod[fns[0]] : (mod.run || mod.index);
  }
  if (typeof fn !== 'function') {
    throw new StyleHandlerNotFound(`function ${name}: ${meta.entryPoint ? `entryPoint '${meta.entryPoint}'` : 'no exported function'} in ${path.basename(script)}`);
  }
  const bindings = Array.isArray(meta.bindings) ? meta.bindings : [];
  const trigger = bindings.find((b) => b.type === 'httpTrigger') || { name: 'req', type: 'httpTrigger', direction: 'in' };
  const httpOutput = bindings.find((b) => b.type === 'http' && b.direction === 'out');
  const outName = httpOutput ? httpOutput.name : 'res';
  const definitions = bindings.map((b) => ({ name: b.name, type: b.type, direction: b.direction }));

  return async (event, lambdaCtx) => {
    const r = httpIn(event);
    const req = v3Request(r);
    let settle;
    const finished = new Promise((resolve) => { settle = resolve; });
    const context = v3Context(name, folder, lambdaCtx.awsRequestId, req, r, trigger.name, definitions, settle);
    try {
      const ret = fn(context, req);
      if (ret && typeof ret.then === 'function') {
        ret.then((v) => settle({ result: v }), (err) => settle({ err }));
      }
      const { err, result } = await finished;
      if (err) throw err;
      let res;
      if (outName === '$return') res = result;
      else if (result && typeof result === 'object' && result[outName] !== undefined) res = result[outName];
      else if (context.bindings[outName] !== undefined) res = context.bindings[outName];
      else res = context.res;
      if (res === undefined && result !== undefined && outName === 'res') res = result;
      return v3Response(r, res);
    } catch (err) {
      return crash(r, err, 500, [], '');
    }
  };
}

function v3Request(r) {
  const headers = headerObject(r);
  const query = Object.fromEntries(new URLSearchParams(r.rawQuery));
  const rawBody = r.body.length ? r.body.toString('utf8') : undefined;
  const ctype = (headers['content-type'] || '').toLowerCase();
  let body;
  if (r.body.length) {
    if (ctype.startsWith('application/octet-stream') || ctype.startsWith('multipart/')) body = Buffer.from(r.body);
    else {
      try { body = JSON.parse(rawBody); } catch { body = rawBody; }
    }
  }
  const url = fullUrl(r);
  return {
    method: r.method,
    url,
    originalUrl: url,
    headers,
    query,
    params: { ...r.pathParams },
    user: null,
    body,
    rawBody,
    bufferBody: Buffer.from(r.body),
    get(name) { return headers[String(name).toLowerCase()]; },
    parseFormBody() {
      const form = new URLSearchParams(rawBody || '');
      return { get: (k) => form.get(k), has: (k) => form.has(k), length: [...form.keys()].length };
    },
  };
}

function v3Context(name, folder, invocationId, req, r, triggerName, bindingDefinitions, settle) {
  const log = (...args) => console.log(...args);
  log.error = (...args) => console.error(...args);
  log.warn = (...args) => console.warn(...args);
  log.info = (...args) => console.info(...args);
  log.verbose = (...args) => console.debug(...args);
  const context = {
    invocationId,
    executionContext: { invocationId, functionName: name, functionDirectory: folder, retryContext: null },
    bindings: { [triggerName]: req },
    bindingData: {
      ...r.pathParams,
      query: req.query,
      headers: req.headers,
      sys: { methodName: name, utcNow: new Date().toISOString(), randGuid: crypto.randomUUID() },
      invocationId,
    },
    bindingDefinitions,
    traceContext: { traceparent: req.headers.traceparent, tracestate: req.headers.tracestate, attributes: {} },
    log,
    req,
    done(err, result) {
      if (err) settle({ err });
      else settle({ result });
    },
  };
  context.res = v3ResponseHelper(() => settle({ result: undefined }));
  return context;
}

// The pre-created context.res with its Express-like helpers.
function v3ResponseHelper(finish) {
  const res = {
    headers: {},
    cookies: [],
    status(code) { res.statusCode = code; return res; },
    setHeader(k, v) { res.headers[String(k).toLowerCase()] = v; return res; },
    getHeader(k) { return res.headers[String(k).toLowerCase()]; },
    removeHeader(k) { delete res.headers[String(k).toLowerCase()]; return res; },
    type(t) { return res.setHeader('content-type', t); },
    send(body) { res.body = body; finish(); return res; },
    end(body) { if (body !== undefined) res.body = body; finish(); return res; },
    json(body) { res.setHeader('content-type', 'application/json'); res.body = body; finish(); return res; },
    sendStatus(code) { res.statusCode = code; finish(); return res; },
  };
  res.set = res.header = res.setHeader;
  res.get = res.getHeader;
  return res;
}

function v3Response(r, res) {
  if (res === undefined || res === null) return httpOut(r, 204, [], '');
  if (typeof res !== 'object' || Buffer.isBuffer(res)) res = { body: res };
  const status = Number((typeof res.status === 'function' ? undefined : res.status) || res.statusCode || 200);
  const headers = [];
  for (const [k, v] of Object.entries(res.headers || {})) {
    if (typeof v !== 'function') headers.push([k, v]);
  }
  for (const c of res.cookies || []) {
    headers.push(['Set-Cookie', parseCookieOptions(c.name, c.value, { ...c, maxAgeSeconds: true, path: c.path })]);
  }
  const has = (n) => headers.some(([k]) => k.toLowerCase() === n);
  let body = res.body;
  if (body === undefined || body === null) body = '';
  else if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
    if (!has('content-type')) headers.push(['Content-Type', 'application/octet-stream']);
  } else if (typeof body === 'object') {
    body = JSON.stringify(body);
    if (!has('content-type')) headers.push(['Content-Type', 'application/json; charset=utf-8']);
  } else {
    body = String(body);
    if (!has('content-type')) headers.push(['Content-Type', 'text/plain; charset=utf-8']);
  }
  return httpOut(r, status, headers, body);
}

// ---------------------------------------------------------------------------
// v4

function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*' && glob[i + 1] === '*') { re += '.*'; i++; if (glob[i + 1] === '/') i++; }
    else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      re += '(' + glob.slice(i + 1, end).split(',').map((p) => globToRegExp(p).source.slice(1, -1)).join('|') + ')';
      i = end;
    } else re += c.replace(/[.+^$()|[\]\\]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

function listFiles(root, dir = '', out = []) {
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
    const rel = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) listFiles(root, rel, out);
    else out.push(rel);
  }
  return out;
}

async function loadV4(taskRoot, name) {
  let main = 'index.js';
  try {
    main = JSON.parse(fs.readFileSync(path.join(taskRoot, 'package.json'), 'utf8')).main || main;
  } catch { /* no package.json: index.js */ }
  main = main.replace(/^\.\//, '');
  const files = /[*?{]/.test(main)
    ? listFiles(taskRoot).filter((f) => globToRegExp(main).test(f)).sort()
    : [main];
  for (const f of files) await loadFile(path.join(taskRoot, f));
  const registry = shim('@azure/functions')._nimbusRegistry;
  const fn = registry.get(name);
  if (!fn) {
    throw new StyleHandlerNotFound(`function '${name}' is not registered by ${main} ` +
      `(registered: ${[...registry.keys()].join(', ') || 'none'}; a vendored @azure/functions v4 is not supported yet)`);
  }
  if (fn.trigger !== 'http') throw new StyleHandlerNotFound(`function '${name}' has a ${fn.trigger} trigger; only HTTP functions run on Nimbus`);
  const { HttpRequest, HttpResponse, InvocationContext } = shim('@azure/functions');
  const methods = (fn.options.methods || []).map((m) => m.toUpperCase());
  return async (event, lambdaCtx) => {
    const r = httpIn(event);
    if (r.version && methods.length && !methods.includes(r.method)) {
      return httpOut(r, 405, [], '');
    }
    try {
      const request = new HttpRequest({
        method: r.method,
        url: fullUrl(r),
        headers: r.headers,
        params: r.pathParams,
        body: r.body.length ? { bytes: r.body } : undefined,
      });
      const context = new InvocationContext({
        invocationId: lambdaCtx.awsRequestId,
        functionName: name,
        triggerMetadata: { query: Object.fromEntries(request.query), headers: headerObject(r), ...r.pathParams },
        options: { trigger: { type: 'httpTrigger', methods, authLevel: fn.options.authLevel, route: fn.options.route } },
      });
      let out = await fn.options.handler(request, context);
      if (out === undefined || out === null) out = {};
      const res = out instanceof HttpResponse ? out : new HttpResponse(out);
      const headers = [...res.headers.entries()].filter(([k]) => k !== 'set-cookie');
      for (const c of res.headers.getSetCookie ? res.headers.getSetCookie() : []) headers.push(['Set-Cookie', c]);
      for (const c of res.cookies || []) headers.push(['Set-Cookie', parseCookieOptions(c.name, c.value, { ...c, maxAgeSeconds: true })]);
      let body = res.body;
      const has = (n) => headers.some(([k]) => k === n);
      if (body === undefined || body === null) body = '';
      else if (typeof body === 'string') {
        if (!has('content-type')) headers.push(['content-type', 'text/plain;charset=UTF-8']);
      } else if (Buffer.isBuffer(body) || body instanceof Uint8Array || body instanceof ArrayBuffer) {
        body = Buffer.from(body);
      } else {
        // Blob, stream, FormData, URLSearchParams: let Fetch serialise it.
        const native = new Response(body);
        if (!has('content-type') && native.headers.get('content-type')) headers.push(['content-type', native.headers.get('content-type')]);
        body = Buffer.from(await native.arrayBuffer());
      }
      return httpOut(r, res.status, headers, body);
    } catch (err) {
      return crash(r, err, 500, [], '');
    }
  };
}
