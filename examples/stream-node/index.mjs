// A streaming handler, unchanged from what runs on AWS Lambda: it sends
// server-sent events one by one while it works, so the client sees the first
// one at once instead of the whole answer at the end.
//
//   nimbus deploy examples/stream-node
//   curl -N "$(nimbus url get stream-node)?count=5"
//   nimbus invoke stream-node --stream --data '{"count": 3}'
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const query = event.queryStringParameters ?? {};
  const count = Math.min(Number(query.count ?? event.count ?? 3), 20);
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200,
    headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
  });
  for (let i = 1; i <= count; i++) {
    stream.write(`data: step ${i} of ${count}\n\n`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  stream.end('data: done\n\n');
});
