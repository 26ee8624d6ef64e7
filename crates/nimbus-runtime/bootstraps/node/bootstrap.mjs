// Nimbus Node.js bootstrap: the Lambda Runtime API client that runs inside every
// `nodejs` function instance.
//
// Started as `node --max-old-space-size=<N> $LAMBDA_RUNTIME_DIR/bootstrap.mjs` with
// cwd = LAMBDA_TASK_ROOT. Built-in modules only.
//
// The behaviour follows aws-lambda-ric (the official Node runtime interface client):
// handler resolution (UserFunction.js), completion rules (CallbackContext.js,
// Runtime.js), context object (InvokeContext.js), error shapes (Errors.js) and log
// format (LogPatch.js). Differences on purpose:
//   * HTTP goes over a small HTTP/1.1 client on one persistent `net` socket (no
//     native client, no `http` module), which keeps per-invoke overhead low.
//   * Console records are written with fs.writeSync, so everything logged during an
//     invoke is in the pipe before the result is posted.
//   * An async handler whose promise never settles is reported as
//     Runtime.NodeJsExit when the event loop drains (as the managed runtime does).
//   * A bad event body is reported as Runtime.UnmarshalError.
//   * Fatal diagnostics (init errors, uncaught exceptions, unhandled rejections)
//     are written to stderr; console output goes to stdout.
//
// Exit codes: 129 after an init error or an uncaught exception, 128 after an
// unhandled rejection (as the RIC), 13 when initialisation can never finish (a
// top-level await that never settles), 1 when the Runtime API is unusable.
// Response streaming (awslambda.streamifyResponse, HttpResponseStream) is supported.

import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import util from 'node:util';
import Module, { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// A spare instance (Nimbus started it before any function needed it) waits here,
// Node and this runtime loaded, for its function: the task root and the
// environment it would have been started with. Then it goes on exactly as a
// freshly started instance.
// Nimbus serves the same Runtime API on a Unix socket private to this instance,
// cheaper per round trip than loopback TCP. Not part of the function's environment.
const API_SOCKET = process.env.NIMBUS_RUNTIME_API_SOCKET || null;
delete process.env.NIMBUS_RUNTIME_API_SOCKET;

if (process.env.NIMBUS_SPARE === '1') {
  await awaitAssignment();
  delete process.env.NIMBUS_RUNTIME_API_SOCKET;
}

async function awaitAssignment() {
  const api = process.env.AWS_LAMBDA_RUNTIME_API;
  const colon = api.lastIndexOf(':');
  const body = await new Promise((resolve) => {
    const chunks = [];
    const target = API_SOCKET !== null
      ? { path: API_SOCKET }
      : { port: Number(api.slice(colon + 1)), host: api.slice(0, colon) };
    const socket = net.connect(target, () => {
      socket.write('GET /2018-06-01/runtime/nimbus/assignment HTTP/1.1\r\nHost: nimbus\r\nConnection: close\r\n\r\n');
    });
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => process.exit(1));
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      // Never assigned: the server stopped it.
      if (split < 0 || !all.subarray(0, 12).equals(Buffer.from('HTTP/1.1 200'))) process.exit(0);
      resolve(all.subarray(split + 4).toString('utf8'));
    });
  });
  const fields = body.split('\0');
  process.chdir(fields[0]);
  for (const name of Object.keys(process.env)) delete process.env[name];
  for (const entry of fields.slice(1)) {
    const eq = entry.indexOf('=');
    process.env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  // What Node would have done with NODE_PATH at startup.
  if (process.env.NODE_PATH) Module._initPaths();
}

const env = process.env;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const RUNTIME_API = env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
let API_HOST = RUNTIME_API;
let API_PORT = 80;
{
  const colon = RUNTIME_API.lastIndexOf(':');
  if (colon > 0 && RUNTIME_API.indexOf(']', colon) < 0) {
    API_HOST = RUNTIME_API.slice(0, colon);
    API_PORT = Number(RUNTIME_API.slice(colon + 1)) || 80;
  }
  if (API_HOST.charCodeAt(0) === 91 /* [ */) API_HOST = API_HOST.slice(1, -1);
}

const HANDLER = env._HANDLER || '';
const TASK_ROOT = env.LAMBDA_TASK_ROOT || process.cwd();
const FUNCTION_NAME = env.AWS_LAMBDA_FUNCTION_NAME;
const FUNCTION_VERSION = env.AWS_LAMBDA_FUNCTION_VERSION;
const MEMORY_SIZE = env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE;
const LOG_GROUP = env.AWS_LAMBDA_LOG_GROUP_NAME;
const LOG_STREAM = env.AWS_LAMBDA_LOG_STREAM_NAME;

const API_PREFIX = '/2018-06-01/runtime/';
const INVOCATION_PREFIX = API_PREFIX + 'invocation/';
const COMMON_HEADERS = `Host: ${RUNTIME_API}\r\nUser-Agent: nimbus-nodejs/${process.version.slice(1)}\r\n`;
const NEXT_REQUEST = `GET ${INVOCATION_PREFIX}next HTTP/1.1\r\n${COMMON_HEADERS}\r\n`;

const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID_SYMBOL = Symbol.for('aws.lambda.runtime.tenantId');
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';

// ---------------------------------------------------------------------------
// Runtime state
// ---------------------------------------------------------------------------

const PHASE_INIT = 0;
const PHASE_RUNNING = 1;
let phase = PHASE_INIT;

let handler = null;        // the user's handler function
let streamingHandler = false;
let streamHighWaterMark;
let inv = null;            // current Invocation, null between invokes
let beforeExitAction = null; // what to do when the event loop drains
let currentRequestId;      // shown in log records (undefined during init, like the RIC)
let traceIdSet = '_X_AMZN_TRACE_ID' in env;
let dying = false;         // a fatal error is being handled
let exitCode = null;       // exit with this code once the request in flight completes

let sock = null;           // the persistent connection to the Runtime API

// ---------------------------------------------------------------------------
// Errors (aws-lambda-ric Errors.js)
// ---------------------------------------------------------------------------

function runtimeErrorClass(name) {
  const cls = { [name]: class extends Error {} }[name];
  cls.prototype.name = 'Runtime.' + name;
  return cls;
}
const ImportModuleError = runtimeErrorClass('ImportModuleError');
const HandlerNotFound = runtimeErrorClass('HandlerNotFound');
const MalformedHandlerName = runtimeErrorClass('MalformedHandlerName');
const UserCodeSyntaxError = runtimeErrorClass('UserCodeSyntaxError');
const MalformedStreamingHandler = runtimeErrorClass('MalformedStreamingHandler');
const InvalidStreamingOperation = runtimeErrorClass('InvalidStreamingOperation');
const UnmarshalError = runtimeErrorClass('UnmarshalError');
const NodeJsExit = runtimeErrorClass('NodeJsExit');
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    let message = reason;
    try { String(message); } catch { message = 'unhandled promise rejection'; }
    super(message);
    this.reason = reason;
    this.promise = promise;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';

function isErrorLike(o) {
  return o && o.name && o.message && o.stack && typeof o.name === 'string' &&
    typeof o.message === 'string' && typeof o.stack === 'string';
}

const DEL_RE = /\x7F/g;

// The error document posted to /error and /init/error.
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return {
        errorType: error.name?.replace(DEL_RE, '%7F'),
        errorMessage: error.message?.replace(DEL_RE, '%7F'),
        trace: error.stack.replace(DEL_RE, '%7F').split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage: 'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

function intoError(err) {
  if (err instanceof Error) return err;
  try { return new Error(err); } catch { return new Error(String(typeof err)); }
}

function withEnumerableProperties(error) {
  if (error instanceof Error) {
    const ret = Object.assign({ errorType: error.name, errorMessage: error.message, code: error.code }, error);
    if (typeof error.stack === 'string') ret.stack = error.stack.split('\n');
    return ret;
  }
  return error;
}

// "\t" + JSON of an error, used in text-format error log records.
function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_k, v) => withEnumerableProperties(v));
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

// ---------------------------------------------------------------------------
// Logging (aws-lambda-ric LogPatch.js)
// ---------------------------------------------------------------------------

const LEVELS = {
  TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6,
};
const JSON_FORMAT = (env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
const MIN_LEVEL = LEVELS[(env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;

let sleepCell = null;
// Synchronous write of a whole string. Copes with a non-blocking fd (EAGAIN, which
// appears once user code has touched process.stdout) and with partial writes.
// When the process.stdout/stderr stream still holds queued output, the record is
// queued behind it instead, to keep the order.
function writeFd(fd, s) {
  const stream = stdioStreams[fd];
  if (stream !== null && stream.writableLength > 0 && !stream.destroyed) {
    stream.write(s);
    return;
  }
  writeFdSync(fd, s);
}

function writeFdSync(fd, s) {
  let n;
  try {
    n = fs.writeSync(fd, s);
    if (n === Buffer.byteLength(s)) return;
  } catch (e) {
    if (e.code !== 'EAGAIN') return; // EPIPE etc.: nobody is listening, drop
    n = 0;
  }
  const buf = Buffer.from(s);
  let off = n;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN') return;
      if (sleepCell === null) sleepCell = new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(sleepCell, 0, 0, 1);
    }
  }
}

const NL_RE = /\n/g;

function textRecord(level, message, params) {
  return (new Date().toISOString() + '\t' + currentRequestId + '\t' + level + '\t' +
    util.format(message, ...params)).replace(NL_RE, '\r') + '\n';
}

function jsonErrorReplacer(_k, value) {
  if (value instanceof Error) {
    return Object.assign({
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    }, value);
  }
  return value;
}

function jsonRecord(level, message, params) {
  const tenantId = globalThis[TENANT_ID_SYMBOL];
  const result = { timestamp: new Date().toISOString(), level, requestId: currentRequestId };
  if (tenantId !== undefined && tenantId !== null) result.tenantId = tenantId;
  let line;
  if (params.length === 0) {
    result.message = message;
    try {
      line = JSON.stringify(result, jsonErrorReplacer);
    } catch {
      result.message = util.format(result.message);
      line = JSON.stringify(result);
    }
  } else {
    result.message = util.format(message, ...params);
    const all = [message, ...params];
    for (const p of all) {
      if (p instanceof Error) {
        result.errorType = p?.constructor?.name ?? 'UnknownError';
        result.errorMessage = p.message;
        result.stackTrace = typeof p.stack === 'string' ? p.stack.split('\n') : [];
        break;
      }
    }
    line = JSON.stringify(result);
  }
  return line.replace(NL_RE, '\r') + '\n';
}

const formatRecord = JSON_FORMAT ? jsonRecord : textRecord;

function makeLogger(level) {
  if (LEVELS[level] < MIN_LEVEL) return function () {};
  return function (message, ...params) {
    writeFd(1, formatRecord(level, message, params));
  };
}

const logError = makeLogger('ERROR');

// Log an error the way the RIC does ("Invoke Error", ...), to stdout at ERROR level.
function logStructuredError(label, err) {
  if (JSON_FORMAT) logError(intoError(err));
  else logError(label, toFormatted(intoError(err)));
}

// Fatal diagnostics go to stderr, whatever the log level, written synchronously
// because the process is about to exit.
function logFatal(label, err) {
  try {
    writeFdSync(2, JSON_FORMAT
      ? formatRecord('ERROR', intoError(err), [])
      : formatRecord('ERROR', label, [toFormatted(intoError(err))]));
  } catch { /* never let logging prevent the exit */ }
}

function patchConsole() {
  console.trace = makeLogger('TRACE');
  console.debug = makeLogger('DEBUG');
  console.info = makeLogger('INFO');
  console.log = console.info;
  console.warn = makeLogger('WARN');
  console.error = makeLogger('ERROR');
  console.fatal = makeLogger('FATAL');
}

// Output written through process.stdout / process.stderr streams (console.dir,
// console.table, direct writes) may sit in the stream's queue when the pipe is full.
// Remember the streams user code has touched, and let them drain before a result is
// posted.
const touchedStreams = [];
const stdioStreams = [null, null, null];
function hookStdioStream(name, fd) {
  const desc = Object.getOwnPropertyDescriptor(process, name);
  if (!desc || typeof desc.get !== 'function' || !desc.configurable) return;
  Object.defineProperty(process, name, {
    configurable: true,
    enumerable: desc.enumerable,
    get() {
      const stream = desc.get.call(this);
      Object.defineProperty(process, name, desc);
      touchedStreams.push(stream);
      stdioStreams[fd] = stream;
      return stream;
    },
  });
}

function stdioPending() {
  for (let i = 0; i < touchedStreams.length; i++) {
    const s = touchedStreams[i];
    if (s.writableLength > 0 && !s.destroyed) return s;
  }
  return null;
}

function afterStdioFlushed(fn) {
  const s = stdioPending();
  if (s === null) fn();
  else s.write('', () => afterStdioFlushed(fn));
}

// ---------------------------------------------------------------------------
// Minimal HTTP/1.1 client over one persistent socket
// ---------------------------------------------------------------------------

const READ_BUFFER = Buffer.allocUnsafe(65536);
const HEAD_END = Buffer.from('\r\n\r\n');
const MODE_LENGTH = 0;
const MODE_CHUNKED = 1;
const MODE_CLOSE = 2;

let req = null;          // request in flight: {data, cb, got, retry, isPost}
let connectFailures = 0;
let lastSocketError = null;

// response parser state
let rHead = null;        // ResponseHead of the response being read
let rRaw = null;         // bytes received before the head was complete
let rChunks = [];        // body pieces (copies), chunked and read-until-close bodies
let rLength = 0;
let rBody = null;        // Content-Length body being filled
let cState = 0;          // chunked decoder: 0 size line, 1 data, 2 data CRLF, 3 trailers
let cRemain = 0;
let cLine = '';

function resetParser() {
  rHead = null; rRaw = null; rChunks = []; rLength = 0; rBody = null;
  cState = 0; cRemain = 0; cLine = '';
}

function connect() {
  const onread = { buffer: READ_BUFFER, callback: (n, buf) => onRead(s, n, buf) };
  const s = API_SOCKET !== null
    ? net.connect({ path: API_SOCKET, onread })
    : net.connect({ host: API_HOST, port: API_PORT, noDelay: true, onread });
  s.on('error', (err) => { lastSocketError = err; });
  s.on('close', () => onSocketClose(s));
  sock = s;
  if (req === null) s.unref();
}

// Send a complete request (head and body as one string). cb(head, body)
// runs once the whole response has arrived; `body` may be a view into the shared
// read buffer and must be consumed synchronously.
function request(data, cb, isPost, chained = false) {
  send({ data, cb, got: false, retry: true, isPost, chained, written: false });
}

function send(r) {
  req = r;
  resetParser();
  if (sock === null) connect();
  else sock.ref();
  if (r.data === null) return;
  if (r.chained) sock.write(r.data, () => onChainedWritten(r));
  else sock.write(r.data);
}

// A chained result is answered only by the next invocation, so a runtime that
// must exit leaves as soon as the result is written: the server reads it before
// it sees the socket close.
function onChainedWritten(r) {
  r.written = true;
  if (exitCode !== null && req === r) process.exit(exitCode);
}

function onRead(s, n, buf) {
  if (s !== sock || req === null || n <= 0) return;
  req.got = true;
  connectFailures = 0;
  feed(buf.subarray(0, n));
}

function feed(b) {
  while (rHead === null) {
    if (rRaw !== null) { b = Buffer.concat([rRaw, b]); rRaw = null; }
    const he = b.indexOf(HEAD_END);
    if (he < 0) {
      if (b.length > 1048576) return protocolError('response head too large');
      rRaw = Buffer.from(b);
      return;
    }
    const head = parseHead(b.latin1Slice(0, he));
    b = b.subarray(he + 4);
    if (head === null) return protocolError('malformed response head');
    if (head.status >= 100 && head.status < 200) {
      if (b.length === 0) return;
      continue; // interim response: parse the next head
    }
    rHead = head;
  }
  const h = rHead;
  if (h.mode === MODE_LENGTH) {
    if (rBody === null) {
      if (b.length >= h.length) return finish(b.subarray(0, h.length));
      rBody = Buffer.allocUnsafe(h.length);
    }
    rLength += b.copy(rBody, rLength);
    if (rLength >= h.length) finish(rBody);
  } else if (h.mode === MODE_CHUNKED) {
    feedChunked(b);
  } else if (b.length > 0) {
    rChunks.push(Buffer.from(b));
    rLength += b.length;
  }
}

function feedChunked(b) {
  let i = 0;
  const len = b.length;
  while (i < len) {
    if (cState === 1) {
      const take = Math.min(cRemain, len - i);
      rChunks.push(Buffer.from(b.subarray(i, i + take)));
      rLength += take;
      i += take;
      cRemain -= take;
      if (cRemain === 0) cState = 2;
      continue;
    }
    const nl = b.indexOf(10, i);
    if (nl < 0) {
      if (cState !== 2) cLine += b.toString('latin1', i, len);
      return;
    }
    const line = cLine + b.toString('latin1', i, nl);
    cLine = '';
    i = nl + 1;
    if (cState === 0) {
      const size = parseInt(line, 16);
      if (Number.isNaN(size) || size < 0) return protocolError('bad chunk size');
      if (size === 0) cState = 3;
      else { cRemain = size; cState = 1; }
    } else if (cState === 2) {
      cState = 0;
    } else if (line === '' || line === '\r') {
      return finish(Buffer.concat(rChunks, rLength));
    }
  }
}

// Response head. Only the fields the runtime uses are kept, in a fixed shape.
class ResponseHead {
  constructor(status) {
    this.status = status;
    this.mode = MODE_CLOSE;
    this.length = 0;
    this.close = false;
    this.requestId = undefined;
    this.deadlineMs = undefined;
    this.functionArn = undefined;
    this.traceId = undefined;
    this.clientContext = undefined;
    this.cognitoIdentity = undefined;
    this.tenantId = undefined;
  }
}

const NON_ASCII_RE = /[\x80-\xff]/;
// The head is decoded as latin1; values that may carry UTF-8 text are re-decoded.
function utf8Value(v) {
  return NON_ASCII_RE.test(v) ? Buffer.from(v, 'latin1').toString('utf8') : v;
}

function parseHead(text) {
  const firstEnd = text.indexOf('\r\n');
  const first = firstEnd < 0 ? text : text.slice(0, firstEnd);
  if (!first.startsWith('HTTP/1.')) return null;
  const status = parseInt(first.slice(9, 12), 10);
  if (Number.isNaN(status)) return null;
  const h = new ResponseHead(status);
  let connection;
  let te;
  let contentLength;
  const len = text.length;
  let pos = firstEnd < 0 ? len : firstEnd + 2;
  while (pos < len) {
    let end = text.indexOf('\r\n', pos);
    if (end < 0) end = len;
    const colon = text.indexOf(':', pos);
    if (colon > pos && colon < end) {
      let vs = colon + 1;
      while (vs < end && (text.charCodeAt(vs) === 32 || text.charCodeAt(vs) === 9)) vs++;
      let ve = end;
      while (ve > vs && (text.charCodeAt(ve - 1) === 32 || text.charCodeAt(ve - 1) === 9)) ve--;
      const c0 = text.charCodeAt(pos) | 0x20;
      if (c0 === 108 /* l */ || c0 === 99 /* c */ || c0 === 116 /* t */) {
        const value = text.slice(vs, ve);
        switch (text.slice(pos, colon).toLowerCase()) {
          case 'lambda-runtime-aws-request-id': h.requestId = value; break;
          case 'lambda-runtime-deadline-ms': h.deadlineMs = value; break;
          case 'lambda-runtime-invoked-function-arn': h.functionArn = value; break;
          case 'lambda-runtime-trace-id': h.traceId = value; break;
          case 'lambda-runtime-client-context': h.clientContext = utf8Value(value); break;
          case 'lambda-runtime-cognito-identity': h.cognitoIdentity = utf8Value(value); break;
          case 'lambda-runtime-aws-tenant-id': h.tenantId = utf8Value(value); break;
          case 'content-length': contentLength = value; break;
          case 'transfer-encoding': te = te === undefined ? value : te + ', ' + value; break;
          case 'connection': connection = connection === undefined ? value : connection + ', ' + value; break;
        }
      }
    }
    pos = end + 2;
  }
  const close = connection !== undefined
    ? /\bclose\b/i.test(connection)
    : first.charCodeAt(7) === 48 /* HTTP/1.0 */;
  if (te !== undefined && /chunked/i.test(te)) {
    h.mode = MODE_CHUNKED;
  } else if (contentLength !== undefined) {
    h.mode = MODE_LENGTH;
    h.length = parseInt(contentLength, 10) || 0;
  } else if (status === 204 || status === 304) {
    h.mode = MODE_LENGTH;
  }
  h.close = close || h.mode === MODE_CLOSE;
  return h;
}

function finish(body) {
  const r = req;
  const h = rHead;
  req = null;
  resetParser();
  if (h.close) {
    const s = sock;
    sock = null;
    if (s !== null) s.destroy();
  } else if (sock !== null) {
    sock.unref();
  }
  r.cb(h, body);
}

function onSocketClose(s) {
  if (s !== sock) return;
  sock = null;
  const r = req;
  if (r === null) return; // idle connection closed: reconnect on the next request
  if (rHead !== null && rHead.mode === MODE_CLOSE) {
    finish(Buffer.concat(rChunks, rLength));
    return;
  }
  if (!r.got && r.retry) {
    connectFailures++;
    if (connectFailures <= 8) {
      const delay = connectFailures === 1 ? 0 : Math.min(5 << connectFailures, 500);
      req = null;
      setTimeout(send, delay, r);
      return;
    }
  }
  apiFailure('connection to the Runtime API at ' + RUNTIME_API + ' was lost' +
    (lastSocketError ? ': ' + lastSocketError.message : ''));
}

function protocolError(msg) {
  const s = sock;
  sock = null;
  if (s !== null) s.destroy();
  apiFailure('invalid response from the Runtime API: ' + msg);
}

// The Runtime API is unusable: nothing can be reported, so log and exit.
function apiFailure(msg) {
  logFatal('Runtime API Error', new Error(msg));
  process.exit(1);
}

function postRequest(p, body, extraHeaders) {
  return `POST ${p} HTTP/1.1\r\n${COMMON_HEADERS}Content-Type: application/json\r\n${extraHeaders}` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

// ---------------------------------------------------------------------------
// Handler loading (aws-lambda-ric UserFunction.js)
// ---------------------------------------------------------------------------

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;
// CommonJS require, created on first use (ESM-only functions never need it).
let cjsRequire = null;
function require(id) {
  if (cjsRequire === null) cjsRequire = createRequire(import.meta.url);
  return cjsRequire(id);
}
function requireResolve(id, options) {
  if (cjsRequire === null) cjsRequire = createRequire(import.meta.url);
  return cjsRequire.resolve(id, options);
}

function tryRequireFile(file, ext) {
  const p = file + (ext || '');
  return fs.existsSync(p) ? require(p) : undefined;
}

async function tryImportFile(file, ext) {
  const p = file + (ext || '');
  if (fs.existsSync(p)) return await import(pathToFileURL(p).href);
  return undefined;
}

function folderHasTypeModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const pj = path.join(folder, '/package.json');
  if (fs.existsSync(pj)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(pj));
      if (pkg) return pkg.type === 'module';
    } catch (e) {
      console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
      return false;
    }
  }
  if (folder === '/') return false;
  return folderHasTypeModule(path.resolve(folder, '..'));
}

function hasPackageJsonTypeModule(file) {
  const jsPath = file + '.js';
  return fs.existsSync(jsPath) ? folderHasTypeModule(path.resolve(path.dirname(jsPath))) : false;
}

async function tryRequire(appRoot, moduleRoot, mod) {
  const lambdaStylePath = path.resolve(appRoot, moduleRoot, mod);
  // 1. extensionless file (CommonJS)
  const extensionless = tryRequireFile(lambdaStylePath);
  if (extensionless) return extensionless;
  // 2. .js as CommonJS unless the nearest package.json says "type": "module"
  const typeModule = hasPackageJsonTypeModule(lambdaStylePath);
  if (!typeModule) {
    const loaded = tryRequireFile(lambdaStylePath, '.js');
    if (loaded) return loaded;
  }
  // 3. .js as ESM, .mjs, .cjs
  const loaded = (typeModule && await tryImportFile(lambdaStylePath, '.js')) ||
    await tryImportFile(lambdaStylePath, '.mjs') ||
    tryRequireFile(lambdaStylePath, '.cjs');
  if (loaded) return loaded;
  // 4. node-style resolution (node_modules, NODE_PATH)
  const nodeStylePath = requireResolve(mod, { paths: [appRoot, moduleRoot] });
  return require(nodeStylePath);
}

function installGlobalAwsLambda() {
  if (env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA === '1' ||
      env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA === 'true') return;
  globalThis.awslambda = {
    streamifyResponse(fn, options) {
      fn[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') {
        fn[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      }
      return fn;
    },
    HttpResponseStream,
  };
}

async function loadUserApp(appRoot, moduleRoot, mod) {
  installGlobalAwsLambda();
  try {
    return await tryRequire(appRoot, moduleRoot, mod);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(e);
    }
    throw e;
  }
}

async function loadHandler(appRoot, fullHandlerString) {
  if (fullHandlerString.includes('..')) {
    throw new MalformedHandlerName(`'${fullHandlerString}' is not a valid handler name. ` +
      'Use absolute paths when specifying root directories in handler names.');
  }
  const moduleAndHandler = path.basename(fullHandlerString);
  const moduleRoot = fullHandlerString.substring(0, fullHandlerString.indexOf(moduleAndHandler));
  const match = moduleAndHandler.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) throw new MalformedHandlerName('Bad handler');
  const userApp = await loadUserApp(appRoot, moduleRoot, match[1]);
  const fn = match[2].split('.').reduce((nested, key) => nested && nested[key], userApp);
  if (!fn) throw new HandlerNotFound(`${fullHandlerString} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${fullHandlerString} is not a function`);
  return fn;
}

// An Azure or Google function wrapped as a Lambda handler by the adapters in
// styles/ (next to this file; imported only for these styles).
async function loadStyledHandler(style) {
  const { load } = await import(`./styles/${style}.mjs`);
  const { StyleHandlerNotFound } = await import('./styles/common.mjs');
  if (HANDLER.split('/').includes('..')) {
    throw new MalformedHandlerName(`'${HANDLER}' is not a valid handler name.`);
  }
  try {
    return await load(TASK_ROOT, HANDLER);
  } catch (e) {
    if (e instanceof StyleHandlerNotFound) throw new HandlerNotFound(e.message);
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && (e.code === 'MODULE_NOT_FOUND' || e.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(e);
    }
    throw e;
  }
}

function streamingMode(fn) {
  const s = fn[HANDLER_STREAMING];
  if (s === undefined || s === null || s === false) return false;
  if (s === STREAM_RESPONSE) return true;
  throw new MalformedStreamingHandler('Only response streaming is supported.');
}

// ---------------------------------------------------------------------------
// Invocations
// ---------------------------------------------------------------------------

class Invocation {
  constructor(id, deadline) {
    this.id = id;
    this.path = INVOCATION_PREFIX + encodeURIComponent(id);
    this.deadline = deadline;
    this.finished = false;  // a completion (callback/succeed/fail/done/promise) was accepted
    this.posted = false;    // the result or error has been sent
    this.waits = true;      // context.callbackWaitsForEmptyEventLoop
    this.isAsync = false;   // the handler returned a thenable
    this.stream = null;     // ResponseStream for streaming handlers
    this.handlerDone = false;
    this.responded = false;
  }
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

function nextInvocation() {
  request(NEXT_REQUEST, onNext, false);
}

function onNext(h, body) {
  if (h.status !== 200) {
    return apiFailure(`unexpected status ${h.status} from /next: ${String(body).slice(0, 500)}`);
  }
  const id = h.requestId;
  if (!id) return apiFailure('invocation id is missing or invalid');
  const st = new Invocation(id, Number(h.deadlineMs));
  inv = st;
  const tenantId = h.tenantId;
  currentRequestId = id;
  globalThis[REQUEST_ID_SYMBOL] = id;
  globalThis[TENANT_ID_SYMBOL] = tenantId;
  const trace = h.traceId;
  if (trace) {
    env._X_AMZN_TRACE_ID = trace;
    traceIdSet = true;
  } else if (traceIdSet) {
    delete env._X_AMZN_TRACE_ID;
    traceIdSet = false;
  }

  let event;
  try {
    event = JSON.parse(body.toString());
  } catch (e) {
    st.finished = true;
    postError(st, new UnmarshalError('Unable to unmarshal input: ' + e.message));
    return;
  }

  if (streamingHandler) return invokeStreaming(st, event, h, tenantId);

  const callback = (err, result) => onCallback(st, err, result);
  const succeed = (result) => onDone(st, null, result);
  let ctx;
  try {
    ctx = {
      get callbackWaitsForEmptyEventLoop() { return st.waits; },
      set callbackWaitsForEmptyEventLoop(value) { st.waits = value; },
      succeed,
      fail: (err) => (err === undefined || err === null ? onDone(st, 'handled') : onDone(st, err, null)),
      done: (err, result) => onDone(st, err, result),
      functionVersion: FUNCTION_VERSION,
      functionName: FUNCTION_NAME,
      memoryLimitInMB: MEMORY_SIZE,
      logGroupName: LOG_GROUP,
      logStreamName: LOG_STREAM,
      clientContext: parseJsonHeader(h.clientContext, 'ClientContext'),
      identity: parseJsonHeader(h.cognitoIdentity, 'CognitoIdentity'),
      invokedFunctionArn: h.functionArn,
      awsRequestId: id,
      tenantId,
      getRemainingTimeInMillis: () => st.deadline - Date.now(),
    };
  } catch (e) {
    callback(e);
    return;
  }

  beforeExitAction = () => onLoopDrained(st);
  let result;
  try {
    result = handler(event, ctx, callback);
  } catch (e) {
    callback(e);
    return;
  }
  if (result && typeof result.then === 'function') {
    st.isAsync = true;
    const fail = ctx.fail;
    if (result instanceof Promise) result.then(succeed, fail);
    else Promise.resolve(result).then(succeed, fail);
  }
}

// callback(err, result): errors are reported at once, results when the event loop
// is empty (unless callbackWaitsForEmptyEventLoop was set to false).
function onCallback(st, err, result) {
  if (st.finished) return;
  st.finished = true;
  if (inv === st) beforeExitAction = null;
  if (err !== undefined && err !== null) {
    postError(st, err);
  } else if (!st.waits) {
    complete(st, result);
  } else {
    beforeExitAction = () => { setImmediate(complete, st, result); };
  }
}

// context.succeed / fail / done and promise settlement: reported at once.
function onDone(st, err, result) {
  if (st.finished) return;
  st.finished = true;
  if (inv === st) beforeExitAction = null;
  if (err !== undefined && err !== null) postError(st, err);
  else complete(st, result);
}

// The event loop drained while the invocation was still open.
function onLoopDrained(st) {
  if (st.finished) return;
  st.finished = true;
  if (st.isAsync) {
    postError(st, new NodeJsExit('Node.js exited before the handler finished: ' +
      'the handler returned a Promise that was never settled'));
  } else {
    complete(st, null);
  }
}

function complete(st, result) {
  if (st.posted) {
    logError('Invocation has already been reported as done. Cannot call complete more than once per invocation.');
    return;
  }
  let body;
  try {
    body = JSON.stringify(result === undefined ? null : result);
  } catch {
    postError(st, new Error('Unable to stringify response body'));
    return;
  }
  if (body === undefined) body = 'null';
  st.posted = true;
  if (inv === st) beforeExitAction = null;
  postOutcome(st.path + '/response', body);
}

// With Nimbus's own socket, a result is posted with Nimbus-Await-Next and its
// answer is the next invocation instead of 202 (see runtime_api.rs): one message
// each way per invocation. Not once the runtime is about to exit.
const AWAIT_NEXT = API_SOCKET !== null;
const AWAIT_NEXT_HEADER = 'Nimbus-Await-Next: 1\r\n';

function postOutcome(p, body) {
  const chained = AWAIT_NEXT && exitCode === null;
  postResult(postRequest(p, body, chained ? AWAIT_NEXT_HEADER : ''), chained);
}

// Post a result once output written through process.stdout/stderr has drained.
let postQueued = false;
function postResult(data, chained = false) {
  if (touchedStreams.length === 0 || stdioPending() === null) {
    request(data, onPosted, true, chained);
    return;
  }
  postQueued = true;
  afterStdioFlushed(() => {
    postQueued = false;
    request(data, onPosted, true, chained);
  });
}

function postError(st, err) {
  if (st.posted) return;
  st.posted = true;
  if (inv === st) beforeExitAction = null;
  logStructuredError('Invoke Error', err);
  postOutcome(st.path + '/error', JSON.stringify(toRapidResponse(err)));
}

function onPosted(h, body) {
  if (exitCode !== null) process.exit(exitCode);
  const st = inv;
  if (st !== null && st.stream !== null) {
    st.responded = true;
    streamMaybeNext(st);
    return;
  }
  inv = null;
  // The answer to a chained result is the next invocation; otherwise 202 (or a
  // refusal such as 413, after which the runtime asks for the next one itself).
  if (h.status === 200) onNext(h, body);
  else nextInvocation();
}

// ---------------------------------------------------------------------------
// Response streaming (awslambda.streamifyResponse)
// ---------------------------------------------------------------------------

const TRAILER_ERROR_TYPE = 'Lambda-Runtime-Function-Error-Type';
const TRAILER_ERROR_BODY = 'Lambda-Runtime-Function-Error-Body';
let ResponseStreamClass = null;

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType('application/vnd.awslambda.http-integration-response');
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

function headerSafe(v) {
  return String(v).replace(/[^\x20-\x7e\t]/g, (c) => encodeURIComponent(c));
}

function createResponseStream(st) {
  if (ResponseStreamClass === null) {
    const { Writable } = require('node:stream');
    ResponseStreamClass = class ResponseStream extends Writable {
      constructor(invocation, hwm) {
        super(hwm === undefined ? {} : { highWaterMark: hwm });
        this._inv = invocation;
        this._contentType = 'application/octet-stream';
        this._writeCalled = false;
        this._headSent = false;
        this._tailSent = false;
        this._socket = null;
      }

      setContentType(contentType) {
        if (this._writeCalled || this._headSent) {
          throw new InvalidStreamingOperation('Cannot set content-type, too late.');
        }
        this._contentType = contentType;
      }

      _beforeFirstWrite() {
        if (this._writeCalled) return;
        this._writeCalled = true;
        if (typeof this._onBeforeFirstWrite === 'function') {
          this._onBeforeFirstWrite((chunk) => super.write(chunk));
        }
      }

      write(chunk, encoding, callback) {
        if (typeof chunk !== 'string' && !Buffer.isBuffer(chunk) && chunk?.constructor !== Uint8Array) {
          chunk = JSON.stringify(chunk);
        }
        this._beforeFirstWrite();
        return super.write(chunk, encoding, callback);
      }

      end(chunk, encoding, callback) {
        if (typeof chunk === 'function') { callback = chunk; chunk = undefined; encoding = undefined; }
        else if (typeof encoding === 'function') { callback = encoding; encoding = undefined; }
        if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
        else this._beforeFirstWrite();
        return super.end(callback);
      }

      _sendHead() {
        if (this._headSent) return;
        this._headSent = true;
        const data = `POST ${this._inv.path}/response HTTP/1.1\r\n${COMMON_HEADERS}` +
          'Lambda-Runtime-Function-Response-Mode: streaming\r\n' +
          'Transfer-Encoding: chunked\r\n' +
          `Trailer: ${TRAILER_ERROR_TYPE}, ${TRAILER_ERROR_BODY}\r\n` +
          `Content-Type: ${headerSafe(this._contentType)}\r\n\r\n`;
        send({ data, cb: onPosted, got: false, retry: false, isPost: true });
        this._socket = sock;
        // Until the body is complete, the open request must not keep the event loop
        // alive: a stream the handler never ends is detected when the loop drains.
        sock.unref();
      }

      _sendTail(tail) {
        this._tailSent = true;
        this._inv.posted = true;
        if (this._socket === sock && sock !== null) {
          sock.ref();
          sock.write(tail);
        }
      }

      _write(chunk, _encoding, cb) {
        if (this._tailSent) return cb();
        this._sendHead();
        const s = this._socket;
        if (s !== sock || s === null || chunk.length === 0) return cb();
        s.cork();
        s.write(chunk.length.toString(16) + '\r\n');
        s.write(chunk);
        s.write('\r\n', () => cb());
        s.uncork();
      }

      _final(cb) {
        if (this._tailSent) return cb();
        this._sendHead();
        afterStdioFlushed(() => {
          if (!this._tailSent) this._sendTail('0\r\n\r\n');
          cb();
          streamMaybeNext(this._inv);
        });
      }

      _fail(err) {
        if (this._tailSent) return false;
        this._sendHead();
        const e = toRapidResponse(err);
        const bodyB64 = Buffer.from(JSON.stringify(e)).toString('base64');
        this._sendTail(`0\r\n${TRAILER_ERROR_TYPE}: ${headerSafe(e.errorType)}\r\n` +
          `${TRAILER_ERROR_BODY}: ${bodyB64}\r\n\r\n`);
        return true;
      }
    };
  }
  return new ResponseStreamClass(st, streamHighWaterMark);
}

function invokeStreaming(st, event, h, tenantId) {
  const rs = createResponseStream(st);
  st.stream = rs;
  rs.on('error', () => {}); // errors are reported through the trailers
  let ctx;
  try {
    ctx = {
      get callbackWaitsForEmptyEventLoop() { return st.waits; },
      set callbackWaitsForEmptyEventLoop(value) { st.waits = value; },
      functionVersion: FUNCTION_VERSION,
      functionName: FUNCTION_NAME,
      memoryLimitInMB: MEMORY_SIZE,
      logGroupName: LOG_GROUP,
      logStreamName: LOG_STREAM,
      clientContext: parseJsonHeader(h.clientContext, 'ClientContext'),
      identity: parseJsonHeader(h.cognitoIdentity, 'CognitoIdentity'),
      invokedFunctionArn: h.functionArn,
      awsRequestId: st.id,
      tenantId,
      getRemainingTimeInMillis: () => st.deadline - Date.now(),
    };
  } catch (e) {
    streamFail(st, e);
    return;
  }
  beforeExitAction = () => onStreamLoopDrained(st);
  let result;
  try {
    result = handler(event, rs, ctx);
  } catch (e) {
    streamFail(st, e);
    return;
  }
  if (!(result && typeof result.then === 'function')) {
    streamFail(st, 'Streaming does not support non-async handlers.');
    return;
  }
  st.isAsync = true;
  Promise.resolve(result).then((value) => {
    if (value !== undefined) console.warn('Streaming handlers ignore return values.');
    st.handlerDone = true;
    streamMaybeNext(st);
  }, (err) => {
    st.handlerDone = true;
    streamFail(st, err);
  });
}

function streamFail(st, err) {
  st.handlerDone = true;
  logStructuredError('Invoke Error', err);
  st.stream._fail(err);
  streamMaybeNext(st);
}

// The next invocation starts once the handler has finished and the server has
// answered the streamed POST (and, by default, once the event loop is empty).
function streamMaybeNext(st) {
  if (inv !== st || !st.handlerDone || !st.responded || !st.stream._tailSent) return;
  st.finished = true;
  if (exitCode !== null) process.exit(exitCode);
  const next = () => { if (inv === st) { inv = null; nextInvocation(); } };
  if (!st.waits) {
    beforeExitAction = null;
    next();
  } else {
    beforeExitAction = () => { setImmediate(next); };
  }
}

function onStreamLoopDrained(st) {
  if (inv !== st) return;
  if (!st.handlerDone) {
    streamFail(st, new NodeJsExit('Node.js exited before the handler finished: ' +
      'the handler returned a Promise that was never settled'));
  } else if (!st.stream._tailSent) {
    streamFail(st, 'Response stream is not finished.');
  } else {
    // Waiting for the server's answer keeps the loop alive, so this is unexpected;
    // re-arm and let the pending request complete.
    beforeExitAction = () => onStreamLoopDrained(st);
  }
}

// ---------------------------------------------------------------------------
// Fatal errors, init errors, process hooks
// ---------------------------------------------------------------------------

function postInitError(err, code) {
  const e = toRapidResponse(err);
  const data = postRequest(API_PREFIX + 'init/error', JSON.stringify(e),
    `Lambda-Runtime-Function-Error-Type: ${headerSafe(e.errorType)}\r\n`);
  afterStdioFlushed(() => request(data, () => process.exit(code), true));
}

function fatal(err, code, label) {
  logFatal(label, err);
  if (dying) return;
  dying = true;
  exitCode = code;
  if (phase === PHASE_INIT) {
    postInitError(err, code);
    return;
  }
  const st = inv;
  if (st !== null && !st.posted) {
    st.finished = true;
    if (st.stream !== null) {
      st.handlerDone = true;
      st.stream._fail(err);
      if (req === null) process.exit(code);
    } else {
      st.posted = true;
      if (req !== null) process.exit(code);
      postResult(postRequest(st.path + '/error', JSON.stringify(toRapidResponse(err)), ''));
    }
    return;
  }
  // The result is already on its way: exit once the server has answered it (a
  // chained one: once it is written).
  if (postQueued || (req !== null && req.isPost)) {
    if (req !== null && req.chained && req.written) process.exit(code);
    return;
  }
  process.exit(code);
}

process.on('uncaughtException', (err) => {
  fatal(err, 129, 'Uncaught Exception');
});

process.on('unhandledRejection', (reason, promise) => {
  fatal(new UnhandledPromiseRejection(reason, promise), 128, 'Unhandled Promise Rejection');
});

process.on('beforeExit', () => {
  const action = beforeExitAction;
  if (action !== null) {
    beforeExitAction = null;
    action();
  } else if (phase === PHASE_INIT && !dying) {
    // Loading the handler is still pending but nothing can make progress any
    // more (for example a top-level await on a Promise that never settles).
    fatal(new NodeJsExit('Node.js exited during initialization: ' +
      'the handler module awaited a Promise that was never settled'), 13, 'Uncaught Exception');
  }
});

// ---------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------

async function main() {
  // Open the connection first, so that the TCP handshake overlaps with loading the
  // user's code.
  connect();
  patchConsole();
  hookStdioStream('stdout', 1);
  hookStdioStream('stderr', 2);
  let fn;
  try {
    const style = env.NIMBUS_HANDLER_STYLE;
    fn = style === 'azure' || style === 'google'
      ? await loadStyledHandler(style)
      : await loadHandler(TASK_ROOT, HANDLER);
    streamingHandler = streamingMode(fn);
    if (streamingHandler) {
      const hwm = parseInt(fn[HANDLER_HIGHWATERMARK]);
      streamHighWaterMark = Number.isNaN(hwm) ? undefined : hwm;
    }
  } catch (err) {
    fatal(err, 129, 'Uncaught Exception');
    return;
  }
  if (dying) return;
  handler = fn;
  // Let rejections left unhandled by module initialisation surface as init errors
  // before init is declared finished by the first /next.
  setImmediate(() => {
    if (dying) return;
    phase = PHASE_RUNNING;
    nextInvocation();
  });
}

main();
