//! OperationOutcome (§6.9): `{"resourceType":"OperationOutcome","issue":[{"severity","code","diagnostics"}]}`.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Issue {
    severity: Severity,
    code: &'static str,
    diagnostics: String,
}

/// One issue with code `processing`, as every reference outcome has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationOutcome {
    resource_type: &'static str,
    issue: [Issue; 1],
}

impl OperationOutcome {
    pub fn new(severity: Severity, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            resource_type: "OperationOutcome",
            issue: [Issue { severity, code: "processing", diagnostics: diagnostics.into() }],
        }
    }

    /// The outcome of a failed request or batch entry.
    pub fn error(diagnostics: impl Into<String>) -> Self {
        Self::new(Severity::Error, diagnostics)
    }

    /// The same outcome with another issue code (e.g. `forbidden` for a refusal by SMART scope).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.issue[0].code = code;
        self
    }

    pub fn diagnostics(&self) -> &str {
        &self.issue[0].diagnostics
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_the_reference_shape() {
        let outcome = OperationOutcome::error("Unsupported FHIR resource type: Foo.");
        assert_eq!(
            serde_json::to_string(&outcome).unwrap(),
            json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "processing", "diagnostics": "Unsupported FHIR resource type: Foo."}]
            })
            .to_string()
        );
        assert_eq!(outcome.diagnostics(), "Unsupported FHIR resource type: Foo.");
        let warning = serde_json::to_value(OperationOutcome::new(Severity::Warning, "w")).unwrap();
        assert_eq!(warning["issue"][0]["severity"], "warning");
    }
}
