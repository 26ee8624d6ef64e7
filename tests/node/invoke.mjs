// Drives Nimbus's Lambda API with the AWS SDK for JavaScript v3 (@aws-sdk/client-lambda),
// exactly as a Node program would drive AWS Lambda, only with `endpoint` set.
//
//   node tests/node/invoke.mjs ENDPOINT FUNCTION_NAME ZIP_PATH PAYLOAD_JSON
//
// Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. The script
// 1. creates FUNCTION_NAME (python3.12, app.handler) from the zip at ZIP_PATH,
// 2. invokes it with PAYLOAD_JSON and LogType 'Tail',
// 3. invokes a function that does not exist, which must throw ResourceNotFoundException,
// and prints one JSON summary on stdout. It exits non-zero (reason on stderr) when a
// step fails in a way the summary cannot describe. Run by tests/aws/test_node_sdk.py;
// dependencies are installed by scripts/test (`npm ci --prefix tests/node`).

import { readFile } from 'node:fs/promises';

import {
  CreateFunctionCommand,
  InvokeCommand,
  LambdaClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-lambda';

function fail(message) {
  process.stderr.write(`invoke.mjs: ${message}\n`);
  process.exit(2);
}

function describeError(err) {
  return {
    name: err?.name ?? null,
    message: err?.message ?? String(err),
    httpStatusCode: err?.$metadata?.httpStatusCode ?? null,
  };
}

const [endpoint, functionName, zipPath, payloadJson] = process.argv.slice(2);
if (!endpoint || !functionName || !zipPath || payloadJson === undefined) {
  fail('usage: node invoke.mjs ENDPOINT FUNCTION_NAME ZIP_PATH PAYLOAD_JSON');
}
const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = process.env;
if (!accessKeyId || !secretAccessKey) {
  fail('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set');
}

const client = new LambdaClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId, secretAccessKey },
  maxAttempts: 1,
});

const summary = {};

let created;
try {
  created = await client.send(
    new CreateFunctionCommand({
      FunctionName: functionName,
      Runtime: 'python3.12',
      Role: 'arn:aws:iam::000000000000:role/lambda-role',
      Handler: 'app.handler',
      Code: { ZipFile: await readFile(zipPath) },
    }),
  );
} catch (err) {
  fail(`CreateFunction failed: ${JSON.stringify(describeError(err))}`);
}
summary.create = {
  FunctionName: created.FunctionName ?? null,
  FunctionArn: created.FunctionArn ?? null,
  Runtime: created.Runtime ?? null,
  Handler: created.Handler ?? null,
  State: created.State ?? null,
  CodeSha256: created.CodeSha256 ?? null,
  httpStatusCode: created.$metadata.httpStatusCode,
};

let invoked;
try {
  invoked = await client.send(
    new InvokeCommand({
      FunctionName: functionName,
      Payload: new TextEncoder().encode(payloadJson),
      LogType: 'Tail',
    }),
  );
} catch (err) {
  fail(`Invoke failed: ${JSON.stringify(describeError(err))}`);
}
const payloadText = invoked.Payload === undefined ? null : new TextDecoder().decode(invoked.Payload);
let payload = null;
let payloadIsJson = false;
try {
  payload = payloadText === null ? null : JSON.parse(payloadText);
  payloadIsJson = payloadText !== null;
} catch {
  payloadIsJson = false;
}
const logTail = invoked.LogResult === undefined ? null : Buffer.from(invoked.LogResult, 'base64').toString('utf8');
summary.invoke = {
  StatusCode: invoked.StatusCode ?? null,
  ExecutedVersion: invoked.ExecutedVersion ?? null,
  FunctionError: invoked.FunctionError ?? null,
  Payload: payload,
  PayloadIsJson: payloadIsJson,
  PayloadText: payloadText,
  LogResultPresent: invoked.LogResult !== undefined,
  LogTail: logTail,
  LogTailHasReport: logTail !== null && logTail.includes('REPORT RequestId'),
};

const missingName = `${functionName}-missing`;
try {
  const resp = await client.send(
    new InvokeCommand({ FunctionName: missingName, Payload: new TextEncoder().encode('{}') }),
  );
  summary.missing = {
    FunctionName: missingName,
    threw: false,
    StatusCode: resp.StatusCode ?? null,
    error: null,
    isResourceNotFoundException: false,
  };
} catch (err) {
  summary.missing = {
    FunctionName: missingName,
    threw: true,
    StatusCode: null,
    error: describeError(err),
    // The SDK maps the error code to its modeled exception class only when the
    // response's error shape is one it understands.
    isResourceNotFoundException: err instanceof ResourceNotFoundException,
  };
}

client.destroy();
process.stdout.write(`${JSON.stringify(summary)}\n`);
