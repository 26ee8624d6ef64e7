//! ARNs and names of state machines and executions, as Step Functions forms
//! them: `arn:aws:states:REGION:ACCOUNT:stateMachine:NAME` and
//! `arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`. The native API and
//! the CLI also accept the short forms `NAME` and `MACHINE:NAME`.

use super::WorkflowError;

/// Where ARNs live.
#[derive(Debug, Clone)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

impl ArnScope {
    pub fn machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.region, self.account_id
        )
    }

    pub fn execution_arn(&self, machine: &str, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:execution:{machine}:{name}",
            self.region, self.account_id
        )
    }

    /// A state machine ARN from an ARN or a bare name.
    pub fn machine_ref(&self, r: &str) -> Result<String, WorkflowError> {
        if !r.starts_with("arn:") {
            check_name(r)?;
            return Ok(self.machine_arn(r));
        }
        let prefix = format!(
            "arn:aws:states:{}:{}:stateMachine:",
            self.region, self.account_id
        );
        match r.strip_prefix(&prefix) {
            Some(name) if check_name(name).is_ok() => Ok(r.to_string()),
            _ => Err(WorkflowError::InvalidArn(format!("Invalid Arn: '{r}'"))),
        }
    }

    /// An execution ARN from an ARN or `MACHINE:NAME`.
    pub fn execution_ref(&self, r: &str) -> Result<String, WorkflowError> {
        if !r.starts_with("arn:") {
            let (m, n) = r.split_once(':').ok_or_else(|| {
                WorkflowError::InvalidArn(format!(
                    "Invalid execution '{r}': give its ARN or <state machine>:<execution name>"
                ))
            })?;
            check_name(m)?;
            check_name(n)?;
            return Ok(self.execution_arn(m, n));
        }
        let prefix = format!(
            "arn:aws:states:{}:{}:execution:",
            self.region, self.account_id
        );
        match r
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(':'))
        {
            Some((m, n)) if check_name(m).is_ok() && check_name(n).is_ok() => Ok(r.to_string()),
            _ => Err(WorkflowError::InvalidArn(format!("Invalid Arn: '{r}'"))),
        }
    }
}

/// The name of a state machine from its ARN.
pub fn machine_name(arn: &str) -> &str {
    arn.rsplit(':').next().unwrap_or(arn)
}

/// Step Functions' name rules: 1-80 characters, none of whitespace, brackets,
/// wildcards, `"#%\^|~`$&,;:/` or control characters.
pub fn check_name(name: &str) -> Result<(), WorkflowError> {
    let bad =
        |c: char| c.is_whitespace() || c.is_control() || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(c);
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(bad) {
        return Err(WorkflowError::InvalidName(format!(
            "Invalid Name: '{name}' (1-80 characters; no whitespace, brackets, wildcards or any of \"#%\\^|~`$&,;:/)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_names() {
        let s = ArnScope {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
        };
        let m = s.machine_ref("flow").unwrap();
        assert_eq!(m, "arn:aws:states:us-east-1:000000000000:stateMachine:flow");
        assert_eq!(s.machine_ref(&m).unwrap(), m);
        assert_eq!(machine_name(&m), "flow");
        assert!(
            s.machine_ref("arn:aws:states:eu-west-1:1:stateMachine:x")
                .is_err()
        );
        let e = s.execution_ref("flow:run-1").unwrap();
        assert_eq!(
            e,
            "arn:aws:states:us-east-1:000000000000:execution:flow:run-1"
        );
        assert_eq!(s.execution_ref(&e).unwrap(), e);
        assert!(s.execution_ref("flow").is_err());
        assert!(check_name("bad name").is_err());
        assert!(check_name(&"x".repeat(81)).is_err());
        assert!(check_name("ok-name_1.2").is_ok());
    }
}
