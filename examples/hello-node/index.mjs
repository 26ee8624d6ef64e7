let invocations = 0;

export const handler = async (event, context) => {
  invocations += 1;
  const name = (event && event.name) || "World";
  console.log(`greeting ${name} (invocation ${invocations} of this instance)`);
  return {
    message: `${process.env.GREETING ?? "Hello"}, ${name}!`,
    requestId: context.awsRequestId,
    remainingMs: context.getRemainingTimeInMillis(),
    invocations,
  };
};
