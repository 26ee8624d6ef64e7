//! Who signed an AWS request, and what they may touch.
//!
//! Two kinds of callers hold access keys: operators (keys made with `nimbus keys`
//! or the admin key), who may do anything, and functions, whose instances get
//! credentials of their own (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, derived
//! per function, see `nimbus_store::KeyStore::function_credentials`). A function
//! reaches only the resources its `permissions` grant
//! ([`nimbus_core::permissions`]), read from the live registry on every check,
//! so a changed grant applies at once. The SigV4 middleware puts the
//! [`Principal`] into the request's extensions; `--dev` makes everyone an
//! operator.

use nimbus_core::policy::ArnScope;

use crate::AwsState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator key (or `--dev`): everything is allowed.
    Operator,
    /// The credentials of one function's instances, and the trace header
    /// the call came with: the SDKs send the invocation's own
    /// (`_X_AMZN_TRACE_ID`), whose `Lineage` counts the chain of events the
    /// call continues (recursive loop detection, [`nimbus_core::lineage`]).
    /// Carried with the message, topic or bucket event it creates, that count
    /// holds whichever node the call and the event it triggers reach.
    Function { name: String, trace: Option<String> },
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Operator))
    }
}

/// The ARNs of this server's resources, for authorisation.
pub fn arns(state: &AwsState) -> ArnScope {
    let c = state.control.config();
    ArnScope {
        region: c.region.clone(),
        account_id: c.account_id.clone(),
    }
}

impl Principal {
    /// The principal of a request (operator when none was recorded: `--dev`).
    pub fn of<B>(req: &axum::http::Request<B>) -> Principal {
        req.extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Operator)
    }

    /// Whether this principal may perform the IAM `action` (`s3:GetObject`,
    /// `sqs:SendMessage`, `lambda:InvokeFunction`, …) on the resource whose
    /// ARN is `resource`: always for operators; for a function, what its
    /// current permissions say ([`nimbus_core::policy`]).
    pub fn allows(&self, state: &AwsState, action: &str, resource: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Function { name, .. } => state
                .control
                .registry()
                .function_allows(name, action, resource),
        }
    }

    /// The function whose credentials signed the request, if any: recorded
    /// as the creator of what it sets up, so delivery can re-check its grant.
    pub fn function(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Function { name, .. } => Some(name),
        }
    }

    /// The trace header a function's call came with, if any.
    pub fn sent_trace(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Function { trace, .. } => trace.as_deref(),
        }
    }

    /// A function's principal, with the trace header of its request.
    pub fn function_with(name: String, headers: &axum::http::HeaderMap) -> Self {
        let trace = headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Principal::Function { name, trace }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }

    /// Who, for error messages (`function photos` / `operator`).
    pub fn describe(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Function { name, .. } => format!("function {name}"),
        }
    }

    /// AWS's wording for a refusal, with the grant that would allow it.
    pub fn denial(&self, action: &str, resource: &str) -> String {
        format!(
            "User: {} is not authorized to perform: {action} on resource: {resource} \
             (grant it in the function's permissions, e.g. {{\"Effect\": \"Allow\", \"Action\": \"{action}\", \"Resource\": \"{resource}\"}})",
            self.describe()
        )
    }
}

/// Keeps function credentials to what they were granted where the handlers
/// do not check it themselves. On the Lambda API a function may only invoke
/// (Invoke and InvokeWithResponseStream, which check `lambda:InvokeFunction`
/// in the handler on the function id the handler resolved, so the check
/// cannot drift from what runs); every other Lambda operation (management,
/// event source mappings, event invoke configs) is the operator's. Step
/// Functions: the operations a function may call are authorised here on the
/// ARN the handler's own parser resolves (`ArnScope::machine_ref` /
/// `execution_ref`); the rest are the operator's. S3, SQS and SNS check each
/// resource in their handlers.
pub async fn limit_functions(
    axum::extract::State(s): axum::extract::State<AwsState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let principal = Principal::of(&req);
    if principal.is_operator() {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    if is_lambda_api(&path) {
        if is_invoke(req.method(), &path) {
            return next.run(req).await;
        }
        return denied(&principal, "lambda", &path).into_response();
    }
    if path == "/" && super::is_json_protocol(&path, req.headers()) {
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(super::stepfunctions::TARGET_PREFIX))
            .unwrap_or("")
            .to_string();
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return denied(&principal, "states", &op).into_response();
        };
        let resource = states_resource(s.workflows.scope(), &op, &bytes);
        let action = format!("states:{op}");
        let allowed = resource
            .as_deref()
            .is_some_and(|arn| principal.allows(&s, &action, arn));
        if !allowed {
            return super::stepfunctions::StatesError::from_code(
                nimbus_core::ErrorCode::Forbidden,
                principal.denial(&action, resource.as_deref().unwrap_or("*")),
            )
            .into_response();
        }
        return next
            .run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await;
    }
    next.run(req).await
}

/// Lambda API paths all start with the API version date (`/2015-03-31/…`).
fn is_lambda_api(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() > 12
        && b[0] == b'/'
        && b[1..5].iter().all(u8::is_ascii_digit)
        && b[5] == b'-'
        && b[8] == b'-'
        && b[11] == b'/'
}

/// Whether a request is Invoke or InvokeWithResponseStream (the only Lambda
/// operations function credentials may call; their handlers authorise).
fn is_invoke(method: &axum::http::Method, path: &str) -> bool {
    let one_segment = |s: &str| !s.is_empty() && !s.contains('/');
    method == axum::http::Method::POST
        && (path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|rest| rest.strip_suffix("/invocations"))
            .is_some_and(one_segment)
            || path
                .strip_prefix("/2021-11-15/functions/")
                .and_then(|rest| rest.strip_suffix("/response-streaming-invocations"))
                .is_some_and(one_segment))
}

/// The ARN a Step Functions operation a function may call acts on, resolved
/// by the parser the handler uses; `None` for operations function
/// credentials may not call and for ids the handler would refuse.
fn states_resource(
    scope: &nimbus_engine::workflows::ArnScope,
    op: &str,
    body: &[u8],
) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str);
    match op {
        "StartExecution" | "StartSyncExecution" | "DescribeStateMachine" | "ListExecutions" => {
            scope.machine_ref(field("stateMachineArn")?).ok()
        }
        "DescribeExecution" | "GetExecutionHistory" | "StopExecution" => {
            scope.execution_ref(field("executionArn")?).ok()
        }
        _ => None,
    }
}

fn denied(principal: &Principal, service: &str, what: &str) -> super::AwsError {
    super::AwsError::from_code(
        nimbus_core::ErrorCode::Forbidden,
        format!(
            "{} may not call {service} {what}: function credentials may only invoke functions and run state machines they were granted",
            principal.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_paths_and_invoke_routes() {
        assert!(is_lambda_api("/2015-03-31/functions"));
        assert!(is_lambda_api("/2019-09-25/functions/f/event-invoke-config"));
        assert!(!is_lambda_api("/v1/functions"));
        assert!(!is_lambda_api("/photos/2015-03-31/x"));
        let post = axum::http::Method::POST;
        assert!(is_invoke(&post, "/2015-03-31/functions/resize/invocations"));
        assert!(is_invoke(
            &post,
            "/2021-11-15/functions/resize/response-streaming-invocations"
        ));
        assert!(!is_invoke(&post, "/2015-03-31/functions/a/b/invocations"));
        assert!(!is_invoke(&post, "/2015-03-31/functions//invocations"));
        assert!(!is_invoke(&post, "/2015-03-31/functions/resize"));
        assert!(!is_invoke(
            &axum::http::Method::GET,
            "/2015-03-31/functions/resize/invocations"
        ));
    }

    #[test]
    fn state_machine_resolved_by_the_handlers_parser() {
        let scope = nimbus_engine::workflows::ArnScope {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let start =
            br#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:checkout"}"#;
        assert_eq!(
            states_resource(&scope, "StartExecution", start).as_deref(),
            Some("arn:aws:states:us-east-1:000000000000:stateMachine:checkout")
        );
        // A bare name is what the handler runs, so it is what is authorised.
        assert_eq!(
            states_resource(&scope, "StartExecution", br#"{"stateMachineArn":"victim"}"#)
                .as_deref(),
            Some("arn:aws:states:us-east-1:000000000000:stateMachine:victim")
        );
        let describe =
            br#"{"executionArn":"arn:aws:states:us-east-1:000000000000:execution:checkout:run-1"}"#;
        assert_eq!(
            states_resource(&scope, "DescribeExecution", describe).as_deref(),
            Some("arn:aws:states:us-east-1:000000000000:execution:checkout:run-1")
        );
        assert_eq!(
            states_resource(
                &scope,
                "DescribeExecution",
                br#"{"executionArn":"victim:run"}"#
            )
            .as_deref(),
            Some("arn:aws:states:us-east-1:000000000000:execution:victim:run")
        );
        // Odd forms the handler refuses are refused here too.
        for odd in [
            r#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:checkout:x"}"#,
            r#"{"stateMachineArn":"arn:aws:states:eu-west-1:000000000000:stateMachine:checkout"}"#,
            r#"{"stateMachineArn":"a:b"}"#,
        ] {
            assert_eq!(
                states_resource(&scope, "StartExecution", odd.as_bytes()),
                None,
                "{odd}"
            );
        }
        assert_eq!(states_resource(&scope, "CreateStateMachine", start), None);
        assert_eq!(states_resource(&scope, "DeleteStateMachine", start), None);
    }
}
