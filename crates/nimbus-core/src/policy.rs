//! The one policy evaluator: may a function's credentials perform `action`
//! (`s3:GetObject`) on the resource `arn` (`arn:aws:s3:::photos/cat.jpg`)?
//!
//! Why one place: a grant is only as strong as its weakest check. Every
//! service (S3, SQS, SNS, Lambda, Step Functions, and the engine when it
//! re-checks a creator's grant at delivery) asks this module with the IAM
//! action name and the ARN of the resource the operation really acts on, so
//! the rules below hold everywhere or nowhere.
//!
//! The rules are IAM's, for the subset Nimbus accepts (see
//! [`crate::permissions`]):
//! - default deny: nothing is allowed unless a statement allows it;
//! - an explicit `Deny` that matches wins over every `Allow`;
//! - actions match case-insensitively, with `*` and `?` wildcards;
//! - resources match case-sensitively, with `*` and `?` within each of the
//!   first five ARN segments (`arn:partition:service:region:account`); in the
//!   resource part (after the fifth colon) `*` also spans `:` and `/`, as a
//!   trailing `*` does in IAM. `*` alone is every resource.
//!
//! No I/O: callers pass the function's permissions, read live.

use crate::permissions::Permission;

/// What the statements say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A `Deny` statement matches (it wins over any `Allow`).
    ExplicitDeny,
    /// No statement matches: denied by default.
    ImplicitDeny,
}

/// Evaluates `permissions` for `action` on `resource`.
pub fn evaluate(permissions: &[Permission], action: &str, resource: &str) -> Decision {
    let mut allowed = false;
    for p in permissions {
        let expanded;
        let st = match p {
            Permission::Statement(st) => st,
            Permission::Grant(g) => match crate::permissions::expand_grant(g) {
                Some(st) => {
                    expanded = st;
                    &expanded
                }
                None => continue,
            },
        };
        if !st.actions.iter().any(|a| action_matches(a, action))
            || !st.resources.iter().any(|r| resource_matches(r, resource))
        {
            continue;
        }
        match st.effect.as_str() {
            "Deny" => return Decision::ExplicitDeny,
            "Allow" => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Whether `permissions` allow `action` on `resource`.
pub fn allows(permissions: &[Permission], action: &str, resource: &str) -> bool {
    evaluate(permissions, action, resource) == Decision::Allow
}

/// An action pattern (`s3:Get*`, `*`) against an action (`s3:GetObject`),
/// case-insensitively as IAM does.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    glob(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

/// A resource pattern (`arn:aws:s3:::photos/*`, `*`) against a concrete ARN.
pub fn resource_matches(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6
        && a.len() == 6
        && p.iter()
            .zip(&a)
            .all(|(p, a)| glob(p.as_bytes(), a.as_bytes()))
}

/// `*` matches any run of bytes (none included), `?` exactly one character;
/// everything else is literal. Iterative with one backtrack point, so no
/// pattern costs more than `O(pattern × text)`.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            if pattern[p] == b'?' {
                // One character, not one byte.
                t += utf8_len(text[t]);
            } else {
                t += 1;
            }
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + utf8_len(text[st]);
            star = Some((sp, t));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

/// The ARNs of the resources operations act on, in this server's region and
/// account (the partition is always `aws`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

impl ArnScope {
    pub fn bucket(bucket: &str) -> String {
        format!("arn:aws:s3:::{bucket}")
    }

    pub fn object(bucket: &str, key: &str) -> String {
        format!("arn:aws:s3:::{bucket}/{key}")
    }

    pub fn queue(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account_id)
    }

    pub fn topic(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{name}", self.region, self.account_id)
    }

    /// A function, or one of its versions or aliases with `qualifier`.
    pub fn function(&self, name: &str, qualifier: Option<&str>) -> String {
        let base = format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account_id
        );
        match qualifier {
            Some(q) => format!("{base}:{q}"),
            None => base,
        }
    }

    pub fn state_machine(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.region, self.account_id
        )
    }

    pub fn execution(&self, machine: &str, execution: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{machine}:{execution}",
            self.region, self.account_id
        )
    }
}

/// Every IAM action a function's credentials can be asked for, per service,
/// as the AWS service authorization reference names them. A statement naming
/// an action without wildcards must name one of these (a typo would
/// otherwise grant nothing, silently).
pub const ACTIONS: &[&str] = &[
    // S3: buckets
    "s3:ListAllMyBuckets",
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetBucketLocation",
    "s3:GetBucketNotification",
    "s3:PutBucketNotification",
    // S3: objects
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
    // SQS
    "sqs:CreateQueue",
    "sqs:DeleteQueue",
    "sqs:GetQueueUrl",
    "sqs:ListQueues",
    "sqs:GetQueueAttributes",
    "sqs:SetQueueAttributes",
    "sqs:PurgeQueue",
    "sqs:ListDeadLetterSourceQueues",
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    // SNS
    "sns:CreateTopic",
    "sns:DeleteTopic",
    "sns:ListTopics",
    "sns:GetTopicAttributes",
    "sns:SetTopicAttributes",
    "sns:Subscribe",
    "sns:Unsubscribe",
    "sns:ListSubscriptions",
    "sns:ListSubscriptionsByTopic",
    "sns:GetSubscriptionAttributes",
    "sns:SetSubscriptionAttributes",
    "sns:Publish",
    // Lambda
    "lambda:InvokeFunction",
    // Step Functions
    "states:StartExecution",
    "states:StartSyncExecution",
    "states:DescribeStateMachine",
    "states:DescribeExecution",
    "states:GetExecutionHistory",
    "states:StopExecution",
    "states:ListExecutions",
    // API Gateway: the WebSocket connections endpoint
    "execute-api:ManageConnections",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::{Permission, Statement};

    fn st(effect: &str, actions: &[&str], resources: &[&str]) -> Permission {
        Permission::Statement(Statement {
            sid: None,
            effect: effect.into(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
            resources: resources.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn grant(g: &str) -> Permission {
        Permission::Grant(g.into())
    }

    const PHOTO: &str = "arn:aws:s3:::photos/cat.jpg";
    const BUCKET: &str = "arn:aws:s3:::photos";

    #[test]
    fn default_deny() {
        assert_eq!(evaluate(&[], "s3:GetObject", PHOTO), Decision::ImplicitDeny);
        let p = [st("Allow", &["s3:GetObject"], &["arn:aws:s3:::other/*"])];
        assert_eq!(evaluate(&p, "s3:GetObject", PHOTO), Decision::ImplicitDeny);
    }

    #[test]
    fn read_only_grant() {
        let p = [st("Allow", &["s3:GetObject"], &["arn:aws:s3:::photos/*"])];
        assert!(allows(&p, "s3:GetObject", PHOTO));
        assert!(!allows(&p, "s3:PutObject", PHOTO));
        assert!(
            !allows(&p, "s3:GetObject", BUCKET),
            "the bucket is not an object"
        );
        assert!(!allows(&p, "s3:ListBucket", BUCKET));
    }

    #[test]
    fn explicit_deny_wins_in_any_order() {
        let allow = st("Allow", &["s3:*"], &["*"]);
        let deny = st("Deny", &["s3:DeleteObject"], &["arn:aws:s3:::photos/*"]);
        for p in [[allow.clone(), deny.clone()], [deny, allow]] {
            assert_eq!(
                evaluate(&p, "s3:DeleteObject", PHOTO),
                Decision::ExplicitDeny
            );
            assert!(allows(&p, "s3:GetObject", PHOTO));
            assert!(allows(&p, "s3:DeleteObject", "arn:aws:s3:::logs/x"));
        }
        // A deny beats the shorthand too.
        let p = [grant("sqs:jobs"), st("Deny", &["sqs:Send*"], &["*"])];
        let q = "arn:aws:sqs:us-east-1:000000000000:jobs";
        assert!(!allows(&p, "sqs:SendMessage", q));
        assert!(allows(&p, "sqs:ReceiveMessage", q));
    }

    #[test]
    fn action_wildcards_are_case_insensitive() {
        assert!(action_matches("sqs:Send*", "sqs:SendMessage"));
        assert!(action_matches("SQS:sendmessage", "sqs:SendMessage"));
        assert!(action_matches("s3:*", "s3:GetObject"));
        assert!(action_matches("*", "lambda:InvokeFunction"));
        assert!(action_matches("s3:?etObject", "s3:GetObject"));
        assert!(!action_matches("s3:?etObject", "s3:GGetObject"));
        assert!(!action_matches("s3:*", "sqs:SendMessage"));
        assert!(!action_matches("sqs:Send", "sqs:SendMessage"));
    }

    #[test]
    fn arn_matching_edge_cases() {
        let q = "arn:aws:sqs:us-east-1:000000000000:jobs";
        assert!(resource_matches("arn:aws:sqs:*:*:jobs", q));
        assert!(resource_matches("arn:aws:sqs:us-east-?:*:jobs", q));
        assert!(!resource_matches("arn:aws:sqs:*:*:job", q));
        assert!(!resource_matches(
            "arn:aws:sqs:*:*:jobs",
            "arn:aws:sqs:r:a:jobs2"
        ));
        assert!(
            !resource_matches("arn:aws:sns:*:*:jobs", q),
            "service segment"
        );
        // `*` does not cross segments before the resource part…
        assert!(!resource_matches("arn:aws:*:jobs", q));
        assert!(!resource_matches(
            "arn:aws:sqs:us-*:000000000000:jobs",
            "arn:aws:sqs:us-east-1:x:000000000000:jobs"
        ));
        // …but does inside it, as IAM's trailing `*` does.
        let f = "arn:aws:lambda:r:000000000000:function:resize:prod";
        assert!(resource_matches("arn:aws:lambda:*:*:function:resize:*", f));
        assert!(resource_matches("arn:aws:lambda:*:*:function:res*", f));
        assert!(
            !resource_matches("arn:aws:lambda:*:*:function:resize", f),
            "qualified"
        );
        assert!(resource_matches(
            "arn:aws:s3:::photos/*",
            "arn:aws:s3:::photos/a/b/c"
        ));
        assert!(!resource_matches(
            "arn:aws:s3:::photos/*",
            "arn:aws:s3:::photos2/a"
        ));
        assert!(!resource_matches("arn:aws:s3:::photos/*", BUCKET));
        assert!(resource_matches(
            "arn:aws:s3:::photos/?.jpg",
            "arn:aws:s3:::photos/é.jpg"
        ));
        assert!(resource_matches("*", "anything"));
        assert!(!resource_matches("", q));
        assert!(!resource_matches("arn:aws:sqs:*:*:jobs", "jobs"));
    }

    #[test]
    fn shorthand_means_every_action_on_the_resource() {
        let p = [grant("s3:photos")];
        assert!(allows(&p, "s3:GetObject", PHOTO));
        assert!(allows(&p, "s3:PutObject", PHOTO));
        assert!(allows(&p, "s3:ListBucket", BUCKET));
        assert!(!allows(&p, "s3:GetObject", "arn:aws:s3:::photos2/x"));
        assert!(!allows(&p, "sqs:SendMessage", "arn:aws:sqs:r:a:photos"));
        let p = [grant("lambda:resize")];
        let scope = ArnScope {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        assert!(allows(
            &p,
            "lambda:InvokeFunction",
            &scope.function("resize", None)
        ));
        assert!(allows(
            &p,
            "lambda:InvokeFunction",
            &scope.function("resize", Some("prod"))
        ));
        assert!(!allows(
            &p,
            "lambda:InvokeFunction",
            &scope.function("resizer", None)
        ));
        let p = [grant("states:checkout")];
        assert!(allows(
            &p,
            "states:StartExecution",
            &scope.state_machine("checkout")
        ));
        assert!(allows(
            &p,
            "states:DescribeExecution",
            &scope.execution("checkout", "run-1")
        ));
        assert!(!allows(
            &p,
            "states:DescribeExecution",
            &scope.execution("checkout2", "run-1")
        ));
        let p = [grant("sqs:jobs-*")];
        assert!(allows(&p, "sqs:SendMessage", &scope.queue("jobs-1")));
        assert!(!allows(&p, "sqs:SendMessage", &scope.queue("job")));
        let p = [grant("sns:*")];
        assert!(allows(&p, "sns:Publish", &scope.topic("anything")));
    }

    #[test]
    fn globbing() {
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(glob(b"a*b*c", b"abc"));
        assert!(!glob(b"a*b*c", b"acb"));
        assert!(glob(b"*-prod", b"db-prod"));
        assert!(!glob(b"*-prod", b"db-prod2"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"**a", b"a"));
    }
}
