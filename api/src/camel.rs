//! The reference Exchange's camelCase rules (jhe-compat §2.1): response keys are camelized recursively, request
//! keys underscoreized, with the same exceptions.

use serde_json::{Map, Value};

/// Keys that keep their spelling in both directions.
const IGNORE_KEYS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "code_challenge",
    "code_challenge_method",
    "grant_type",
    "code_verifier",
    "token_endpoint",
];

/// Fields whose key is converted but whose value (raw OMH JSON) is left exactly as stored.
const IGNORE_FIELDS: &[&str] = &["omh_data"];

/// `last_updated` → `lastUpdated`; `_id` and `a__b` behave as in djangorestframework-camel-case.
pub(crate) fn camelize_key(key: &str) -> String {
    if !key.contains('_') || IGNORE_KEYS.contains(&key) {
        return key.to_owned();
    }
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::with_capacity(key.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next_is_word = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase() || n.is_ascii_digit());
        if c == '_' && next_is_word {
            out.push(chars[i + 1].to_ascii_uppercase());
            i += 2;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// `lastUpdated` → `last_updated`; keys whose underscored form is an ignored key keep their original spelling.
pub(crate) fn underscoreize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    let mut previous: Option<char> = None;
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            let boundary = match previous {
                Some(p) => p.is_ascii_lowercase() || p.is_ascii_digit() || !(p.is_ascii_alphanumeric() || p == '_'),
                None => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
        previous = Some(c);
    }
    if IGNORE_KEYS.contains(&out.as_str()) && out != key { key.to_owned() } else { out }
}

pub(crate) fn camelize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                let new_key = camelize_key(&key);
                let new_value = if IGNORE_FIELDS.contains(&key.as_str()) { value } else { camelize(value) };
                out.insert(new_key, new_value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(camelize).collect()),
        other => other,
    }
}

pub(crate) fn underscoreize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, value) in map {
                let new_key = underscoreize_key(&key);
                let new_value = if IGNORE_FIELDS.contains(&new_key.as_str()) { value } else { underscoreize(value) };
                out.insert(new_key, new_value);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(underscoreize).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn camelizes_like_the_reference() {
        assert_eq!(camelize_key("last_updated"), "lastUpdated");
        assert_eq!(camelize_key("jhe_user_id"), "jheUserId");
        assert_eq!(camelize_key("is_superuser"), "isSuperuser");
        assert_eq!(camelize_key("client_id"), "client_id");
        assert_eq!(camelize_key("token_endpoint"), "token_endpoint");
        assert_eq!(camelize_key("id"), "id");
        let out = camelize(json!({"omh_data": {"heart_rate": 1}, "scope_consents": [{"consented_time": 1}]}));
        assert_eq!(out, json!({"omhData": {"heart_rate": 1}, "scopeConsents": [{"consentedTime": 1}]}));
    }

    #[test]
    fn underscoreizes_like_the_reference() {
        assert_eq!(underscoreize_key("studyScopeConsents"), "study_scope_consents");
        assert_eq!(underscoreize_key("jheUserId"), "jhe_user_id");
        assert_eq!(underscoreize_key("organization_id"), "organization_id");
        assert_eq!(underscoreize_key("organizationId"), "organization_id");
        assert_eq!(underscoreize_key("pageSize"), "page_size");
        assert_eq!(underscoreize_key("_lastUpdated"), "_last_updated");
        assert_eq!(underscoreize_key("patient._has:Group:member:_id"), "patient._has:_group:member:_id");
        // quirk kept from the reference: an ignored key arrives with its original spelling
        assert_eq!(underscoreize_key("clientId"), "clientId");
        assert_eq!(underscoreize_key("client_id"), "client_id");
        let out = underscoreize(json!({"omhData": {"heartRate": 1}, "patientIds": [1]}));
        assert_eq!(out, json!({"omh_data": {"heartRate": 1}, "patient_ids": [1]}));
    }
}
