//! Site settings (`settings`): typed key/value pairs such as `site.url`, one typed column per value type.

use crate::{Error, Page, PageRequest, Result};
use chrono::{DateTime, Utc};
use jhe_schemas::SettingValueType;
use serde::Serialize;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

/// A setting as the REST API shows it: the stored value resolved from its typed column.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Setting {
    pub id: i64,
    pub key: String,
    pub value_type: String,
    pub resolved_value: Value,
    #[serde(serialize_with = "crate::wire::serialize_drf_datetime")]
    pub last_updated: DateTime<Utc>,
}

/// A value already coerced to its type, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    String(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    Json(Value),
}

impl SettingValue {
    pub fn value_type(&self) -> SettingValueType {
        match self {
            SettingValue::String(_) => SettingValueType::String,
            SettingValue::Int(_) => SettingValueType::Int,
            SettingValue::Bool(_) => SettingValueType::Bool,
            SettingValue::Float(_) => SettingValueType::Float,
            SettingValue::Json(_) => SettingValueType::Json,
        }
    }
}

fn not_a(kind: &str, value: &Value) -> Error {
    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    Error::Invalid(format!("value: `{shown}` is not a valid {kind}"))
}

/// Coerces a JSON value to `value_type` the way the reference does (`"42"` is an int, `"yes"` a bool, …); a value
/// that does not fit is an error naming it.
pub fn coerce_setting_value(value_type: SettingValueType, value: &Value) -> Result<SettingValue> {
    let text = value.as_str().map(str::trim);
    Ok(match value_type {
        SettingValueType::String => match value {
            Value::String(s) => SettingValue::String(s.clone()),
            Value::Number(_) | Value::Bool(_) => SettingValue::String(value.to_string()),
            Value::Null => SettingValue::String(String::new()),
            Value::Array(_) | Value::Object(_) => {
                return Err(Error::Invalid(
                    "value: a string setting needs a text value; use valueType `json` for objects and lists".into(),
                ));
            }
        },
        SettingValueType::Int => {
            let parsed = match value {
                Value::Number(n) => {
                    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
                }
                Value::String(_) => text.and_then(|t| t.parse().ok()),
                _ => None,
            };
            SettingValue::Int(parsed.ok_or_else(|| not_a("int", value))?)
        }
        SettingValueType::Bool => {
            let parsed = match value {
                Value::Bool(b) => Some(*b),
                Value::String(_) => match text.map(str::to_ascii_lowercase).as_deref() {
                    Some("true" | "1" | "yes" | "y" | "on") => Some(true),
                    Some("false" | "0" | "no" | "n" | "off") => Some(false),
                    _ => None,
                },
                Value::Number(n) => match n.as_f64() {
                    Some(1.0) => Some(true),
                    Some(0.0) => Some(false),
                    _ => None,
                },
                _ => None,
            };
            SettingValue::Bool(parsed.ok_or_else(|| not_a("bool (true or false)", value))?)
        }
        SettingValueType::Float => {
            let parsed = match value {
                Value::Number(n) => n.as_f64(),
                Value::String(_) => text.and_then(|t| t.parse::<f64>().ok()),
                _ => None,
            };
            SettingValue::Float(parsed.filter(|f| f.is_finite()).ok_or_else(|| not_a("float", value))?)
        }
        SettingValueType::Json => SettingValue::Json(value.clone()),
    })
}

const SETTING_SELECT: &str = "SELECT id, key, value_type,
        COALESCE(CASE value_type
                     WHEN 'string' THEN to_jsonb(value_string)
                     WHEN 'int' THEN to_jsonb(value_int)
                     WHEN 'bool' THEN to_jsonb(value_bool)
                     WHEN 'float' THEN to_jsonb(value_float)
                     ELSE value_json
                 END, 'null'::jsonb) AS resolved_value,
        last_updated
    FROM settings";

/// Settings ordered by key.
pub async fn list_settings(pool: &PgPool, page: PageRequest) -> Result<Page<Setting>> {
    let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM settings"#).fetch_one(pool).await?;
    let items = sqlx::query_as(AssertSqlSafe(format!("{SETTING_SELECT} ORDER BY key, id LIMIT $1 OFFSET $2")))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(pool)
        .await?;
    Ok(Page { count, items })
}

pub async fn get_setting(pool: &PgPool, id: i64) -> Result<Setting> {
    sqlx::query_as(AssertSqlSafe(format!("{SETTING_SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "JheSetting" })
}

/// The text of a string setting; `None` when the key is missing or holds another type.
pub async fn setting_string(pool: &PgPool, key: &str) -> Result<Option<String>> {
    let value: Option<Option<String>> =
        sqlx::query_scalar!("SELECT value_string FROM settings WHERE key = $1 AND value_type = 'string'", key)
            .fetch_optional(pool)
            .await?;
    Ok(value.flatten())
}

/// The value of a JSON setting; `None` when the key is missing or holds another type.
pub async fn setting_json(pool: &PgPool, key: &str) -> Result<Option<Value>> {
    let value: Option<Option<Value>> =
        sqlx::query_scalar!("SELECT value_json FROM settings WHERE key = $1 AND value_type = 'json'", key)
            .fetch_optional(pool)
            .await?;
    Ok(value.flatten())
}

async fn check_key_free(pool: &PgPool, key: &str, except: Option<i64>) -> Result<()> {
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM settings WHERE key = $1 AND id IS DISTINCT FROM $2) AS "exists!""#,
        key,
        except,
    )
    .fetch_one(pool)
    .await?;
    if taken {
        return Err(Error::Conflict(format!("key: a setting with the key `{key}` already exists")));
    }
    Ok(())
}

/// The typed columns of a value: (type, string, int, bool, float, json), all but one null.
type TypedColumns = (&'static str, Option<String>, Option<i64>, Option<bool>, Option<f64>, Option<Value>);

fn typed_columns(value: &SettingValue) -> TypedColumns {
    let kind = value.value_type().as_str();
    match value {
        SettingValue::String(v) => (kind, Some(v.clone()), None, None, None, None),
        SettingValue::Int(v) => (kind, None, Some(*v), None, None, None),
        SettingValue::Bool(v) => (kind, None, None, Some(*v), None, None),
        SettingValue::Float(v) => (kind, None, None, None, Some(*v), None),
        SettingValue::Json(v) => (kind, None, None, None, None, Some(v.clone())),
    }
}

pub async fn create_setting(pool: &PgPool, key: &str, value: &SettingValue) -> Result<Setting> {
    check_key_free(pool, key, None).await?;
    let (kind, text, int, boolean, float, json) = typed_columns(value);
    let id = sqlx::query_scalar!(
        r#"INSERT INTO settings (key, value_type, value_string, value_int, value_bool, value_float, value_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id AS "id!""#,
        key,
        kind,
        text,
        int,
        boolean,
        float,
        json,
    )
    .fetch_one(pool)
    .await?;
    get_setting(pool, id).await
}

/// Renames a setting and/or replaces its value (with its type); `None` keeps what is stored.
pub async fn update_setting(
    pool: &PgPool,
    id: i64,
    key: Option<&str>,
    value: Option<&SettingValue>,
) -> Result<Setting> {
    get_setting(pool, id).await?;
    if let Some(key) = key {
        check_key_free(pool, key, Some(id)).await?;
    }
    let (kind, text, int, boolean, float, json) = match value {
        Some(value) => {
            let (kind, text, int, boolean, float, json) = typed_columns(value);
            (Some(kind), text, int, boolean, float, json)
        }
        None => (None, None, None, None, None, None),
    };
    sqlx::query!(
        "UPDATE settings SET key = COALESCE($2, key),
            value_type = COALESCE($3, value_type),
            value_string = CASE WHEN $3 IS NULL THEN value_string ELSE $4 END,
            value_int = CASE WHEN $3 IS NULL THEN value_int ELSE $5 END,
            value_bool = CASE WHEN $3 IS NULL THEN value_bool ELSE $6 END,
            value_float = CASE WHEN $3 IS NULL THEN value_float ELSE $7 END,
            value_json = CASE WHEN $3 IS NULL THEN value_json ELSE $8 END,
            last_updated = now()
         WHERE id = $1",
        id,
        key,
        kind,
        text,
        int,
        boolean,
        float,
        json,
    )
    .execute(pool)
    .await?;
    get_setting(pool, id).await
}

pub async fn delete_setting(pool: &PgPool, id: i64) -> Result<()> {
    let deleted = sqlx::query!("DELETE FROM settings WHERE id = $1", id).execute(pool).await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "JheSetting" });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_coerced_by_type() {
        use SettingValueType as T;
        assert_eq!(coerce_setting_value(T::Int, &json!("42")).unwrap(), SettingValue::Int(42));
        assert_eq!(coerce_setting_value(T::Int, &json!(7.0)).unwrap(), SettingValue::Int(7));
        assert_eq!(coerce_setting_value(T::Bool, &json!("Yes")).unwrap(), SettingValue::Bool(true));
        assert_eq!(coerce_setting_value(T::Bool, &json!(0)).unwrap(), SettingValue::Bool(false));
        assert_eq!(coerce_setting_value(T::Float, &json!("1.5")).unwrap(), SettingValue::Float(1.5));
        assert_eq!(coerce_setting_value(T::String, &json!(3)).unwrap(), SettingValue::String("3".into()));
        assert_eq!(coerce_setting_value(T::Json, &json!({"a": [1]})).unwrap(), SettingValue::Json(json!({"a": [1]})));
        for (kind, bad) in
            [(T::Int, json!("abc")), (T::Int, json!(1.5)), (T::Bool, json!("maybe")), (T::Float, json!("NaN"))]
        {
            let message = coerce_setting_value(kind, &bad).unwrap_err().to_string();
            assert!(message.starts_with("value: "), "{message}");
        }
        assert!(coerce_setting_value(T::String, &json!({})).is_err());
    }

    #[test]
    fn datetimes_render_like_drf() {
        let render = |text: &str| {
            let value: DateTime<Utc> = text.parse().unwrap();
            let mut out = serde_json::Serializer::new(Vec::new());
            crate::wire::serialize_drf_datetime(&value, &mut out).unwrap();
            String::from_utf8(out.into_inner()).unwrap()
        };
        assert_eq!(render("2025-01-02T03:04:05Z"), "\"2025-01-02T03:04:05Z\"");
        assert_eq!(render("2025-01-02T03:04:05.120Z"), "\"2025-01-02T03:04:05.120000Z\"");
    }
}
