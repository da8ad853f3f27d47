//! `POST /api/v1/invitation/{token}` (public): a patient app redeems an invitation link (jhe-compat §7.4) and gets an
//! authorization code whose PKCE verifier is base64url(token) without padding, which only the link's holder knows.
//! The app exchanges it at `/o/token/` like any code. Errors are REST `{"detail": …}` with the reference's statuses.

use super::token::s256_challenge;
use super::{CONFIG, clients_site_url};
use crate::AppState;
use crate::error::{ApiError, ApiResult, gone};
use crate::extract::RequestUrl;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jhe_catalog::{INVITATION_TOKEN_LENGTH, Redemption};
use jhe_schemas::ErrorKind;
use serde_json::json;

/// The scope the reference grants to invited patients.
const INVITATION_SCOPE: &str = "openid email";

/// What a patient app's token, which comes from redeeming an invitation, may do at most: upload the patient's
/// observations, and read and write the patient's own consents and profile. Reading observations needs the
/// patient's own login; an invitation link is a bearer secret that passes through practitioners' hands and mail.
const PATIENT_APP_SCOPES: &str = "patient/Observation.c patient/Consent.cruds patient/Patient.r";

/// The invited app's scope: the reference's, plus the SMART resource scopes the app asks for in an optional
/// `scope` query parameter (`patient/Observation.c`, …), each within [`PATIENT_APP_SCOPES`], or all of those when
/// it asks for none. A malformed scope, a `system/` one or one beyond the patient app's is a 400 before anything
/// is redeemed.
fn invitation_scope(url: &RequestUrl) -> ApiResult<String> {
    let invalid = |message: String| ApiError::bad_request(format!("invalid_scope: {message}"));
    let requested = url.param("scope").unwrap_or_default();
    let resources = crate::smart_scopes::requested_resource_scopes(requested, false).map_err(invalid)?;
    let granted = if resources.is_empty() {
        PATIENT_APP_SCOPES.to_owned()
    } else {
        crate::smart_scopes::narrowed_scope(PATIENT_APP_SCOPES, Some(&resources.join(" "))).map_err(|_| {
            invalid(format!(
                "an invitation grants a patient app at most `{PATIENT_APP_SCOPES}`; reading observations needs the \
                 patient's own login"
            ))
        })?
    };
    Ok(format!("{INVITATION_SCOPE} {granted}"))
}

fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "Invitation not found or already used.")
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(redeem_invitation))]
pub(crate) struct InvitationApiDoc;

/// `POST /api/v1/invitation/{token}`.
#[utoipa::path(post, path = "/api/v1/invitation/{token}", tag = "invitation",
    params(("token" = String, Path, description = "the 32-character invitation token (the part of the link's code after `_`)"),
           ("scope" = Option<String>, Query, description = "SMART resource scopes to limit the app's tokens to (space separated), within `patient/Observation.c patient/Consent.cruds patient/Patient.r` (the default)")),
    responses((status = 200, description = "`{grant: {grant_type, redirect_uri, client_id, code}, token_endpoint, expires}`; exchange the code at the token endpoint with `code_verifier` = base64url(token) without padding"),
              (status = 400, description = "the patient has no user account, or a malformed `scope`"),
              (status = 403, description = "the invitation was cancelled"),
              (status = 404, description = "no such invitation"),
              (status = 409, description = "already used (outside the 12-hour retry window) or reissued"),
              (status = 410, description = "expired")))]
pub(crate) async fn redeem_invitation(
    State(state): State<AppState>,
    url: RequestUrl,
    Path(token): Path<String>,
) -> ApiResult<Response> {
    if token.len() != INVITATION_TOKEN_LENGTH || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    let scope = invitation_scope(&url)?;
    let redemption = jhe_catalog::redeem_invitation(&state.pool, &jhe_catalog::invitation_token_hash(&token)).await?;
    let (user_id, client_pk, client_id) = match redemption {
        Redemption::Redeemed { user_id, client_pk, client_id } => (user_id, client_pk, client_id),
        Redemption::NotFound => return Err(not_found()),
        Redemption::Expired => return Ok(gone("Invitation has expired.")),
        Redemption::Used { reissued: false } => {
            return Err(ApiError::new(ErrorKind::Conflict, "Invitation has already been used."));
        }
        Redemption::Used { reissued: true } => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "Invitation has been reissued; only the newest invitation link works.",
            ));
        }
        Redemption::Cancelled => return Err(ApiError::forbidden("Invitation has been cancelled.")),
        Redemption::NoUser => {
            return Err(ApiError::bad_request("The invited patient has no user account to sign in with."));
        }
    };
    let site = clients_site_url(&state, &url).await?;
    let redirect_uri = format!("{site}/auth/callback");
    let verifier = URL_SAFE_NO_PAD.encode(token.as_bytes());
    let expires = chrono::Utc::now() + CONFIG.code_lifetime;
    let code = jhe_catalog::create_grant(
        &state.pool,
        &jhe_catalog::NewGrant {
            client_pk,
            user_id,
            redirect_uri: &redirect_uri,
            scope: &scope,
            code_challenge: &s256_challenge(&verifier),
            nonce: None,
            auth_time: chrono::Utc::now(),
            lifetime: CONFIG.code_lifetime,
        },
    )
    .await?;
    // snake_case keys: they are the reference's camelization exceptions (§2.1)
    Ok(axum::Json(json!({
        "grant": {
            "grant_type": "authorization_code",
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "code": code,
        },
        "token_endpoint": format!("{site}/o/token/"),
        "expires": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }))
    .into_response())
}
