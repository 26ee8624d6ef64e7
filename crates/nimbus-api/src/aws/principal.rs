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

use nimbus_core::FunctionName;

use crate::ApiState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator key (or `--dev`): everything is allowed.
    Operator,
    /// The credentials of one function's instances.
    Function(String),
}

impl Principal {
    /// The principal of a request (operator when none was recorded: `--dev`).
    pub fn of<B>(req: &axum::http::Request<B>) -> Principal {
        req.extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal::Operator)
    }

    /// Whether this principal may use `service` (`s3`, `sqs`, `sns`, `lambda`,
    /// `states`) on the resource named `resource` (bucket, queue, topic,
    /// function or state machine name).
    pub fn allows(&self, state: &ApiState, service: &str, resource: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Function(name) => name
                .parse::<FunctionName>()
                .ok()
                .and_then(|n| state.control.registry().get(&n))
                .is_some_and(|d| {
                    nimbus_core::permissions::allows(
                        &d.record.config.permissions,
                        service,
                        resource,
                    )
                }),
        }
    }

    pub fn is_operator(&self) -> bool {
        matches!(self, Principal::Operator)
    }

    /// Who, for error messages (`function photos` / `operator`).
    pub fn describe(&self) -> String {
        match self {
            Principal::Operator => "operator".into(),
            Principal::Function(f) => format!("function {f}"),
        }
    }
}

/// Keeps function credentials to what they were granted on the services whose
/// handlers do not check it themselves: the Lambda API (a function may invoke
/// the functions it was granted, `lambda:<name>`, and nothing else) and Step
/// Functions (start and follow executions of granted state machines,
/// `states:<name>`). S3, SQS and SNS check each resource in their handlers.
pub async fn limit_functions(
    axum::extract::State(s): axum::extract::State<ApiState>,
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
        let target = invoked_function(req.method(), &path);
        return match target {
            Some(name) if principal.allows(&s, "lambda", &name) => next.run(req).await,
            _ => denied(&principal, "lambda", &path).into_response(),
        };
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
        let machine = state_machine_of(&op, &bytes);
        let allowed = machine
            .as_deref()
            .is_some_and(|m| principal.allows(&s, "states", m));
        if !allowed {
            let e = denied(
                &principal,
                "states",
                &format!("{op} on {}", machine.as_deref().unwrap_or("?")),
            );
            return super::stepfunctions::StatesError {
                status: e.status,
                code: "AccessDeniedException".into(),
                message: e.message,
            }
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

/// The function an Invoke or InvokeWithResponseStream request targets (name
/// without qualifier), if it is one.
fn invoked_function(method: &axum::http::Method, path: &str) -> Option<String> {
    if method != axum::http::Method::POST {
        return None;
    }
    let raw = path
        .strip_prefix("/2015-03-31/functions/")
        .and_then(|rest| rest.strip_suffix("/invocations"))
        .or_else(|| {
            path.strip_prefix("/2021-11-15/functions/")?
                .strip_suffix("/response-streaming-invocations")
        })?;
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .ok()?
        .into_owned();
    // `name`, `name:qualifier`, or an ARN `arn:aws:lambda:region:account:function:name[:q]`.
    let name = match id.strip_prefix("arn:") {
        Some(_) => id.split(':').nth(6)?.to_string(),
        None => id.split(':').next()?.to_string(),
    };
    Some(name)
}

/// The state machine a Step Functions operation a function may call acts on.
fn state_machine_of(op: &str, body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match op {
        "StartExecution" | "StartSyncExecution" | "DescribeStateMachine" => {
            // arn:aws:states:region:account:stateMachine:NAME
            v.get("stateMachineArn")?
                .as_str()?
                .split(':')
                .nth(6)
                .map(str::to_string)
        }
        "DescribeExecution" | "GetExecutionHistory" | "StopExecution" => {
            // arn:aws:states:region:account:execution:MACHINE:NAME
            v.get("executionArn")?
                .as_str()?
                .split(':')
                .nth(6)
                .map(str::to_string)
        }
        _ => None,
    }
}

fn denied(principal: &Principal, service: &str, what: &str) -> super::AwsError {
    super::AwsError::new(
        403,
        "AccessDeniedException",
        format!(
            "{} is not authorized to perform {service} {what}: grant it with permissions = [\"{service}:<name>\"]",
            principal.describe()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_paths_and_invoke_targets() {
        assert!(is_lambda_api("/2015-03-31/functions"));
        assert!(is_lambda_api("/2019-09-25/functions/f/event-invoke-config"));
        assert!(!is_lambda_api("/v1/functions"));
        assert!(!is_lambda_api("/photos/2015-03-31/x"));
        let post = axum::http::Method::POST;
        assert_eq!(
            invoked_function(&post, "/2015-03-31/functions/resize/invocations").as_deref(),
            Some("resize")
        );
        assert_eq!(
            invoked_function(&post, "/2015-03-31/functions/resize%3Aprod/invocations").as_deref(),
            Some("resize")
        );
        assert_eq!(
            invoked_function(
                &post,
                "/2021-11-15/functions/resize/response-streaming-invocations"
            )
            .as_deref(),
            Some("resize")
        );
        assert_eq!(
            invoked_function(
                &post,
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Aresize/invocations"
            )
            .as_deref(),
            Some("resize")
        );
        assert_eq!(
            invoked_function(&axum::http::Method::GET, "/2015-03-31/functions/resize"),
            None
        );
    }

    #[test]
    fn state_machine_named_by_each_operation() {
        let start =
            br#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:stateMachine:checkout"}"#;
        assert_eq!(
            state_machine_of("StartExecution", start).as_deref(),
            Some("checkout")
        );
        let describe =
            br#"{"executionArn":"arn:aws:states:us-east-1:000000000000:execution:checkout:run-1"}"#;
        assert_eq!(
            state_machine_of("DescribeExecution", describe).as_deref(),
            Some("checkout")
        );
        assert_eq!(state_machine_of("CreateStateMachine", start), None);
    }
}
