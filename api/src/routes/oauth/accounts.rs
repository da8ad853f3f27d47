//! Browser account pages beside the login page (jhe-compat §7.8, docs/identity.md "Accounts"): signup with the
//! invite code, email verification, password change and reset, and the login page's limits (failed-login
//! lockout per email, a POST budget per client address).
//!
//! Every form carries its CSRF token as the login form does ([`FormBinding`]). Mail goes out in the background
//! (`crate::mail`), so neither a slow mail server nor the existence of an account shows in an answer.

use super::pages::{
    FormBinding, csrf_failed, current_session, error_page, escape, html, redirect, safe_next, set_cookie, start_session,
};
use super::{form_pairs, param};
use crate::AppState;
use crate::error::OAuthError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jhe_catalog::{AccountTokenPurpose, KeepSignedIn};
use std::convert::Infallible;
use std::net::SocketAddr;

/// The setting whose value a signup must quote (§3.7; seeded `jhe`).
const INVITE_CODE_SETTING: &str = "site.registration_invite_code";
/// Memberships of new practitioners (§3.1: `"<org_id>:<role>;…"`).
const DEFAULT_ORGS_SETTING: &str = "auth.default_orgs";
/// Email-verification links live 3 days (allauth's EMAIL_CONFIRMATION_EXPIRE_DAYS).
const VERIFY_EMAIL_LIFETIME: chrono::Duration = chrono::Duration::days(3);
/// Password-reset links live an hour and work once.
const RESET_LIFETIME: chrono::Duration = chrono::Duration::hours(1);
const MIN_PASSWORD_LENGTH: usize = 8;
/// argon2's cost does not grow with the length, but nobody needs more and the form body stays small.
const MAX_PASSWORD_LENGTH: usize = 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/signup/", get(signup_page).post(signup_submit))
        .route("/accounts/signup", get(signup_page).post(signup_submit))
        .route("/accounts/verify_email/{token}/", get(verify_email))
        .route("/accounts/verify_email/{token}", get(verify_email))
        .route("/accounts/password/change/", get(change_page).post(change_submit))
        .route("/accounts/password/change", get(change_page).post(change_submit))
        .route("/accounts/password/reset/", get(reset_request_page).post(reset_request_submit))
        .route("/accounts/password/reset", get(reset_request_page).post(reset_request_submit))
        .route("/accounts/password/reset/{token}/", get(reset_page).post(reset_submit))
        .route("/accounts/password/reset/{token}", get(reset_page).post(reset_submit))
}

/// The TCP peer of the request, when it came over TCP (`jhe_api::serve` records it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// Why a login or form POST is refused for now: answered with 429 and `Retry-After`.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) message: String,
    retry_after_seconds: u64,
}

impl Refusal {
    /// The refused page: `body` (the form with the message) as a 429.
    pub(super) fn page(&self, title: &str, body: &str) -> Response {
        let mut response = html(StatusCode::TOO_MANY_REQUESTS, title, body);
        if let Ok(value) = HeaderValue::from_str(&self.retry_after_seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }

    fn plain(&self) -> Response {
        self.page("Too many requests", &format!("<p class=\"error\">{}</p>", escape(&self.message)))
    }

    fn locked(until: chrono::DateTime<chrono::Utc>) -> Self {
        // rounded up: "try again in 1 minute" must not be said with 61 seconds to go
        let seconds = ((until - chrono::Utc::now()).num_milliseconds().max(1) as u64).div_ceil(1000);
        let minutes = seconds.div_ceil(60);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        Refusal {
            message: format!("Too many failed login attempts. Try again in {minutes} {unit}."),
            retry_after_seconds: seconds,
        }
    }
}

/// Takes one POST from the client address's budget.
fn check_client(state: &AppState, client: ClientAddr, headers: &HeaderMap) -> Result<(), Refusal> {
    let ip = state.login_limits.client_ip(client.0, headers);
    state.login_limits.check_ip(ip).map_err(|wait| {
        let seconds = wait.as_secs().max(1);
        Refusal {
            message: format!("Too many requests from your network. Try again in {seconds} seconds."),
            retry_after_seconds: seconds,
        }
    })
}

/// Before a password is checked: the client's budget, then the email's lock. `Some` refuses the login.
pub(super) async fn login_refusal(
    state: &AppState,
    client: ClientAddr,
    headers: &HeaderMap,
    email: &str,
) -> Result<Option<Refusal>, OAuthError> {
    if let Err(refusal) = check_client(state, client, headers) {
        return Ok(Some(refusal));
    }
    Ok(jhe_catalog::login_locked_until(&state.pool, email).await?.map(Refusal::locked))
}

/// After a wrong password: counts the failure; `Some` when it locked the email.
pub(super) async fn login_failed(state: &AppState, email: &str) -> Result<Option<Refusal>, OAuthError> {
    if email.is_empty() {
        return Ok(None);
    }
    let locked = jhe_catalog::record_login_failure(&state.pool, email, &state.login_limits.lockout).await?;
    if locked.is_some() {
        tracing::warn!(target: "jhe::accounts", "login locked after repeated failures");
    }
    Ok(locked.map(Refusal::locked))
}

/// An internal failure as a page (details only in the log).
fn failed(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "account page failed");
    error_page(StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side; please try again.")
}

/// The form binding of a page (see [`FormBinding`]), or the failure page.
async fn page_binding(state: &AppState, headers: &HeaderMap) -> Result<FormBinding, Response> {
    FormBinding::for_page(state, headers).await.map_err(IntoResponse::into_response)
}

/// A posted account form: its fields and what it is bound to, with the CSRF token checked (a 403 page
/// otherwise).
struct PostedForm {
    pairs: Vec<(String, String)>,
    binding: FormBinding,
}

impl FromRequest<AppState> for PostedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state).await.map_err(IntoResponse::into_response)?;
        let pairs = form_pairs(&body);
        match FormBinding::of_post(state, &headers, param(&pairs, "csrfmiddlewaretoken")).await {
            Ok(Some(binding)) => Ok(PostedForm { pairs, binding }),
            Ok(None) => Err(csrf_failed()),
            Err(error) => Err(error.into_response()),
        }
    }
}

/// Pages whose URL holds a token must not leak it to other sites through `Referer`.
fn no_referrer(mut response: Response) -> Response {
    response.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// What is wrong with an email address for signup, if anything.
fn email_problem(email: &str) -> Option<&'static str> {
    if email.is_empty() {
        return Some("Enter your email address.");
    }
    if email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        return Some("Enter a valid email address.");
    }
    None
}

/// What is wrong with a new password, if anything (Django's default validators, in short).
pub(crate) fn password_problem(password: &str, email: &str) -> Option<String> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LENGTH {
        return Some(format!("This password is too short. It must contain at least {MIN_PASSWORD_LENGTH} characters."));
    }
    if length > MAX_PASSWORD_LENGTH {
        return Some(format!("This password is too long. It may have at most {MAX_PASSWORD_LENGTH} characters."));
    }
    if password.chars().all(|c| c.is_ascii_digit()) {
        return Some("This password is entirely numeric.".to_owned());
    }
    let email = email.trim();
    let local = email.split('@').next().unwrap_or_default();
    if password.eq_ignore_ascii_case(email) || (!local.is_empty() && password.eq_ignore_ascii_case(local)) {
        return Some("The password is too similar to the email address.".to_owned());
    }
    None
}

/// The new password of a form (field `first`, repeated in `second`), checked against the account's `email` and
/// hashed; otherwise the form again with the problem (`invalid`), or a failure page.
async fn new_password_hash(
    pairs: &[(String, String)],
    first: &str,
    second: &str,
    email: &str,
    invalid: impl Fn(&str) -> Response,
) -> Result<String, Response> {
    let password = param(pairs, first).unwrap_or_default().to_owned();
    if password != param(pairs, second).unwrap_or_default() {
        return Err(invalid("The two password fields didn't match."));
    }
    if let Some(problem) = password_problem(&password, email) {
        return Err(invalid(&problem));
    }
    hash(password).await.map_err(failed)
}

/// argon2 takes tens of milliseconds: off the async workers.
async fn hash(password: String) -> jhe_catalog::Result<String> {
    tokio::task::spawn_blocking(move || jhe_catalog::passwords::hash_password(&password))
        .await
        .unwrap_or_else(|error| Err(jhe_catalog::Error::PasswordHash(error.to_string())))
}

async fn verify(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || jhe_catalog::passwords::verify_password(&password, &stored))
        .await
        .unwrap_or(false)
}

/// The base of links in mail: `JHE_SITE_URL`, else the `site.url` setting, else the address the server listens on.
/// Never the request's `Host` or `X-Forwarded-*` headers: whoever asks for a reset link chooses those, and would
/// have the victim's link point at (and its token sent to) the attacker's site.
async fn link_base(state: &AppState) -> String {
    if let Some(site) = &state.site_url {
        return site.trim_end_matches('/').to_owned();
    }
    match jhe_catalog::setting_string(&state.pool, "site.url").await {
        Ok(Some(site)) if !site.trim().is_empty() => site.trim().trim_end_matches('/').to_owned(),
        _ => state.listen_url.as_deref().unwrap_or("http://127.0.0.1:8000").trim_end_matches('/').to_owned(),
    }
}

fn field(id: &str, label: &str, kind: &str, value: &str, autocomplete: &str) -> String {
    format!(
        "<label for=\"{id}\">{label}</label><input id=\"{id}\" name=\"{id}\" type=\"{kind}\" value=\"{value}\" \
         autocomplete=\"{autocomplete}\" required>",
        value = escape(value),
    )
}

fn form(action: &str, csrf: &str, hidden: &[(&str, &str)], fields: &str, button: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\">{}</p>", escape(e))).unwrap_or_default();
    let hidden: String = hidden
        .iter()
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape(value)))
        .collect();
    format!(
        "{error}<form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{csrf}\">{hidden}{fields}\
         <button type=\"submit\">{button}</button></form>",
        action = escape(action),
        csrf = escape(csrf),
    )
}

// ---- signup ----

fn signup_form(csrf: &str, next: &str, email: &str, error: Option<&str>) -> String {
    let fields = [
        field("email", "Email", "email", email, "email"),
        field("password1", "Password", "password", "", "new-password"),
        field("password2", "Password (again)", "password", "", "new-password"),
        field("invite_code", "Invite code", "text", "", "off"),
    ]
    .concat();
    format!(
        "{}<p>Already have an account? <a href=\"/accounts/login/\">Log in</a></p>",
        form("/accounts/signup/", csrf, &[("next", next)], &fields, "Sign up", error)
    )
}

/// `GET /accounts/signup/?next=…`
async fn signup_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let next = safe_next(param(&pairs, "next"));
    let binding = match page_binding(&state, &headers).await {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    binding.finish(html(StatusCode::OK, "Sign up", &signup_form(&binding.csrf, &next, "", None)))
}

/// `POST /accounts/signup/`: creates a practitioner, mails the verification link, signs the new user in and goes
/// on to `next`. A form error re-renders the form (400) with one message.
async fn signup_submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    PostedForm { pairs, binding }: PostedForm,
) -> Response {
    let next = safe_next(param(&pairs, "next"));
    let email = param(&pairs, "email").unwrap_or_default().trim().to_owned();
    let invalid = |message: &str| {
        html(StatusCode::BAD_REQUEST, "Sign up", &signup_form(&binding.csrf, &next, &email, Some(message)))
    };
    if let Err(refusal) = check_client(&state, client, &headers) {
        return refusal.page("Sign up", &signup_form(&binding.csrf, &next, &email, Some(&refusal.message)));
    }
    if let Some(problem) = email_problem(&email) {
        return invalid(problem);
    }
    let expected = match jhe_catalog::setting_string(&state.pool, INVITE_CODE_SETTING).await {
        Ok(code) => code.map(|code| code.trim().to_owned()).filter(|code| !code.is_empty()),
        Err(error) => return failed(error),
    };
    let Some(expected) = expected else {
        // without a configured code nobody may sign up (an empty code must not mean "open to all")
        return invalid("Signing up is closed on this server; ask its administrators for an account.");
    };
    let submitted = param(&pairs, "invite_code").unwrap_or_default().trim();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(submitted.as_bytes(), expected.as_bytes())) {
        return invalid("The invite code is not valid.");
    }
    let hashed = match new_password_hash(&pairs, "password1", "password2", &email, invalid).await {
        Ok(hashed) => hashed,
        Err(response) => return response,
    };
    let memberships = match jhe_catalog::setting_string(&state.pool, DEFAULT_ORGS_SETTING).await {
        Ok(text) => match jhe_catalog::parse_default_orgs(text.as_deref().unwrap_or_default()) {
            Ok(memberships) => memberships,
            Err(problem) => {
                // a broken setting must not block signups: the account is made without memberships
                tracing::error!(setting = DEFAULT_ORGS_SETTING, %problem, "ignored for a new practitioner");
                Vec::new()
            }
        },
        Err(error) => return failed(error),
    };
    let user_id = match jhe_catalog::signup_practitioner(&state.pool, &email, &hashed, &memberships).await {
        Ok(id) => id,
        Err(jhe_catalog::Error::Conflict(_)) => {
            return invalid("A user is already registered with this email address.");
        }
        Err(error) => return failed(error),
    };
    tracing::info!(target: "jhe::accounts", user_id, "practitioner signed up");
    send_verification(&state, user_id, &email).await;
    if let Err(error) = jhe_catalog::record_login(&state.pool, user_id, None).await {
        return failed(error);
    }
    start_session(&state, binding.session.map(|session| session.id), user_id, &next).await
}

/// Mails a verification link (a failure is logged: the account exists either way).
async fn send_verification(state: &AppState, user_id: i64, email: &str) {
    let token = match jhe_catalog::create_account_token(
        &state.pool,
        user_id,
        AccountTokenPurpose::VerifyEmail,
        email,
        VERIFY_EMAIL_LIFETIME,
    )
    .await
    {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, user_id, "could not make an email-verification link");
            return;
        }
    };
    let link = format!("{}/accounts/verify_email/{token}/", link_base(state).await);
    let body = format!(
        "Hello,\n\nThis email address was used to sign up at JupyterHealth Exchange. Confirm it by opening this \
         link:\n\n{link}\n\nThe link is valid for 3 days. If you did not sign up, ignore this message.\n"
    );
    state.mailer.send_later(email.to_owned(), "Confirm your email address".to_owned(), body);
}

/// `GET /accounts/verify_email/<token>/`: marks the email verified (the link works once).
async fn verify_email(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let answer = match jhe_catalog::verify_email_with_token(&state.pool, &token).await {
        Ok(Some(_)) => html(
            StatusCode::OK,
            "Email confirmed",
            "<p>Your email address is confirmed.</p><p><a href=\"/accounts/login/\">Log in</a></p>",
        ),
        Ok(None) => error_page(StatusCode::BAD_REQUEST, "This confirmation link is invalid, already used or expired."),
        Err(error) => failed(error),
    };
    no_referrer(answer)
}

// ---- password change ----

fn change_form(csrf: &str, error: Option<&str>) -> String {
    let fields = [
        field("old_password", "Current password", "password", "", "current-password"),
        field("new_password1", "New password", "password", "", "new-password"),
        field("new_password2", "New password (again)", "password", "", "new-password"),
    ]
    .concat();
    form("/accounts/password/change/", csrf, &[], &fields, "Change password", error)
}

const CHANGE_PATH: &str = "/accounts/password/change/";

/// `GET /accounts/password/change/`: the form, for a signed-in session (others go to the login page first).
async fn change_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match current_session(&state, &headers).await {
        Ok(Some(session)) if session.user_id.is_some() => {
            html(StatusCode::OK, "Change password", &change_form(&session.csrf_token, None))
        }
        Ok(_) => redirect(&format!("/accounts/login/?next={}", percent_encode(CHANGE_PATH))),
        Err(error) => error.into_response(),
    }
}

fn percent_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `POST /accounts/password/change/`: the new password twice, then [`change_password`] with the current one;
/// this browser's session stays signed in.
async fn change_submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    PostedForm { pairs, binding }: PostedForm,
) -> Response {
    let signed_in = binding.session.as_ref().and_then(|session| session.user_id.map(|user| (session.id, user)));
    let Some((session_id, user_id)) = signed_in else {
        return redirect(&format!("/accounts/login/?next={}", percent_encode(CHANGE_PATH)));
    };
    let invalid =
        |message: &str| html(StatusCode::BAD_REQUEST, "Change password", &change_form(&binding.csrf, Some(message)));
    let new_password = param(&pairs, "new_password1").unwrap_or_default();
    if new_password != param(&pairs, "new_password2").unwrap_or_default() {
        return invalid("The two password fields didn't match.");
    }
    let proof = PasswordProof::CurrentPassword(param(&pairs, "old_password"));
    let keep = KeepSignedIn::Session(session_id);
    match change_password(&state, (client, &headers), user_id, proof, new_password, keep).await {
        Ok(()) => html(
            StatusCode::OK,
            "Password changed",
            "<p>Your password was changed. Other browsers and apps signed in with your account were signed out.</p>",
        ),
        Err(PasswordChangeError::Budget(refusal)) => {
            refusal.page("Change password", &change_form(&binding.csrf, Some(&refusal.message)))
        }
        Err(PasswordChangeError::WrongCurrentPassword) => {
            invalid("Your old password was entered incorrectly. Please enter it again.")
        }
        Err(PasswordChangeError::Weak(problem)) => invalid(&problem),
        Err(PasswordChangeError::NoAccount) => redirect("/accounts/login/"),
        Err(PasswordChangeError::Failed(error)) => failed(error),
    }
}

/// What allows a password change.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PasswordProof<'a> {
    /// the user's current password, as typed (missing or empty is wrong)
    CurrentPassword(Option<&'a str>),
    /// a superuser sets another user's password
    Superuser,
}

/// Why a password was not changed (nothing was).
#[derive(Debug)]
pub(crate) enum PasswordChangeError {
    /// the client address spent its budget of account POSTs
    Budget(Refusal),
    WrongCurrentPassword,
    /// the new password breaks a rule of [`password_problem`] (the message says which)
    Weak(String),
    /// no active user with that id
    NoAccount,
    Failed(jhe_catalog::Error),
}

/// The one way a password is changed for a known user (the change form and `PATCH /api/v1/users/{id}`): the
/// client's budget of account POSTs, the proof (the current password, unless a superuser sets another user's),
/// the new password's strength; then the new password is stored, the user's reset links are spent and every
/// session and token of the user ends except `keep` (this replica's token cache is cleared at once; other replicas
/// follow within their TTL).
pub(crate) async fn change_password(
    state: &AppState,
    (client, headers): (ClientAddr, &HeaderMap),
    user_id: i64,
    proof: PasswordProof<'_>,
    new_password: &str,
    keep: KeepSignedIn<'_>,
) -> Result<(), PasswordChangeError> {
    check_client(state, client, headers).map_err(PasswordChangeError::Budget)?;
    let (email, stored) = jhe_catalog::active_user_password(&state.pool, user_id)
        .await
        .map_err(PasswordChangeError::Failed)?
        .ok_or(PasswordChangeError::NoAccount)?;
    if let PasswordProof::CurrentPassword(current) = proof {
        let current = current.unwrap_or_default().to_owned();
        if current.is_empty() || stored.is_empty() || !verify(current, stored).await {
            return Err(PasswordChangeError::WrongCurrentPassword);
        }
    }
    if let Some(problem) = password_problem(new_password, &email) {
        return Err(PasswordChangeError::Weak(problem));
    }
    let hashed = hash(new_password.to_owned()).await.map_err(PasswordChangeError::Failed)?;
    jhe_catalog::change_password(&state.pool, user_id, &hashed, keep).await.map_err(PasswordChangeError::Failed)?;
    state.token_cache.clear();
    tracing::info!(target: "jhe::accounts", user_id, "password changed; other sessions ended, tokens revoked");
    Ok(())
}

// ---- password reset ----

const RESET_SENT: &str = "<p>If an account with that email address exists, we sent it a link to reset the password. \
    Check your inbox (and the spam folder); the link is valid for one hour.</p>\
    <p><a href=\"/accounts/login/\">Back to the login page</a></p>";

fn reset_request_form(csrf: &str, email: &str, error: Option<&str>) -> String {
    let fields = field("email", "Email", "email", email, "email");
    format!(
        "<p>Enter your email address and we will send you a link to set a new password.</p>{}",
        form("/accounts/password/reset/", csrf, &[], &fields, "Send the link", error)
    )
}

/// `GET /accounts/password/reset/`: the email form.
async fn reset_request_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let binding = match page_binding(&state, &headers).await {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    binding.finish(html(StatusCode::OK, "Reset password", &reset_request_form(&binding.csrf, "", None)))
}

/// `POST /accounts/password/reset/`: the same answer, at the same speed, whether or not the email has an account
/// (the lookup and the mail happen after the answer).
async fn reset_request_submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    PostedForm { pairs, binding }: PostedForm,
) -> Response {
    let email = param(&pairs, "email").unwrap_or_default().trim().to_owned();
    if let Err(refusal) = check_client(&state, client, &headers) {
        return refusal.page("Reset password", &reset_request_form(&binding.csrf, &email, Some(&refusal.message)));
    }
    if email.is_empty() || email.len() > 254 {
        let form = reset_request_form(&binding.csrf, &email, Some("Enter a valid email address."));
        return html(StatusCode::BAD_REQUEST, "Reset password", &form);
    }
    let base = link_base(&state).await;
    let background = state.clone();
    tokio::spawn(async move { send_reset_link(&background, &base, &email).await });
    html(StatusCode::OK, "Reset password", RESET_SENT)
}

async fn send_reset_link(state: &AppState, base: &str, email: &str) {
    let candidate = match jhe_catalog::password_reset_candidate(&state.pool, email).await {
        Ok(Some(candidate)) => candidate,
        Ok(None) => {
            tracing::info!(target: "jhe::accounts", "password reset asked for an address without a password account");
            return;
        }
        Err(error) => {
            tracing::error!(%error, "password reset lookup failed");
            return;
        }
    };
    let token = match jhe_catalog::create_account_token(
        &state.pool,
        candidate.id,
        AccountTokenPurpose::PasswordReset,
        &candidate.email,
        RESET_LIFETIME,
    )
    .await
    {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, user_id = candidate.id, "could not make a password-reset link");
            return;
        }
    };
    let link = format!("{base}/accounts/password/reset/{token}/");
    let body = format!(
        "Hello,\n\nSomeone asked to reset the password of your JupyterHealth Exchange account. To choose a new \
         password, open this link:\n\n{link}\n\nThe link is valid for one hour and works once. If you did not ask \
         for it, ignore this message: your password stays as it is.\n"
    );
    tracing::info!(target: "jhe::accounts", user_id = candidate.id, "password-reset link sent");
    state.mailer.send_later(candidate.email, "Reset your password".to_owned(), body);
}

fn reset_form(csrf: &str, token: &str, error: Option<&str>) -> String {
    let fields = [
        field("new_password1", "New password", "password", "", "new-password"),
        field("new_password2", "New password (again)", "password", "", "new-password"),
    ]
    .concat();
    form(&format!("/accounts/password/reset/{token}/"), csrf, &[], &fields, "Set the password", error)
}

fn bad_reset_link() -> Response {
    no_referrer(html(
        StatusCode::BAD_REQUEST,
        "Reset password",
        "<p class=\"error\">This password-reset link is invalid, already used or expired.</p>\
         <p><a href=\"/accounts/password/reset/\">Ask for a new link</a></p>",
    ))
}

/// `GET /accounts/password/reset/<token>/`: the new-password form while the link is good (nothing is used yet, so
/// a mail scanner opening the link does not spend it).
async fn reset_page(State(state): State<AppState>, headers: HeaderMap, Path(token): Path<String>) -> Response {
    match jhe_catalog::account_token_email(&state.pool, &token, AccountTokenPurpose::PasswordReset).await {
        Ok(Some(_)) => {}
        Ok(None) => return bad_reset_link(),
        Err(error) => return failed(error),
    }
    let binding = match page_binding(&state, &headers).await {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    no_referrer(binding.finish(html(StatusCode::OK, "Reset password", &reset_form(&binding.csrf, &token, None))))
}

/// `POST /accounts/password/reset/<token>/`: sets the password, spends the link (and the user's other reset
/// links), ends every session of the user, revokes their tokens, and goes to the login page.
async fn reset_submit(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    Path(token): Path<String>,
    PostedForm { pairs, binding }: PostedForm,
) -> Response {
    if let Err(refusal) = check_client(&state, client, &headers) {
        return no_referrer(refusal.plain());
    }
    let email = match jhe_catalog::account_token_email(&state.pool, &token, AccountTokenPurpose::PasswordReset).await {
        Ok(Some(email)) => email,
        Ok(None) => return bad_reset_link(),
        Err(error) => return failed(error),
    };
    let invalid = |message: &str| {
        no_referrer(html(StatusCode::BAD_REQUEST, "Reset password", &reset_form(&binding.csrf, &token, Some(message))))
    };
    let hashed = match new_password_hash(&pairs, "new_password1", "new_password2", &email, invalid).await {
        Ok(hashed) => hashed,
        Err(response) => return response,
    };
    match jhe_catalog::reset_password_with_token(&state.pool, &token, &hashed).await {
        Ok(Some(user_id)) => {
            tracing::info!(target: "jhe::accounts", user_id, "password reset; sessions ended, tokens revoked");
            let mut response = no_referrer(redirect("/accounts/login/"));
            // a session this browser had is over too (the reset ended the user's; another user's ends here)
            if let Some(session) = &binding.session {
                let _ = jhe_catalog::delete_login_session(&state.pool, session.id).await;
            }
            set_cookie(&mut response, "", 0);
            response
        }
        Ok(None) => bad_reset_link(),
        Err(error) => failed(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_named() {
        assert!(password_problem("short1", "a@b.org").unwrap().contains("too short"));
        assert!(password_problem("1234567890", "a@b.org").unwrap().contains("numeric"));
        assert!(password_problem("Alice@Example.org", "alice@example.org").unwrap().contains("similar"));
        assert!(password_problem("alice.smith", "alice.smith@example.org").unwrap().contains("similar"));
        assert!(password_problem(&"x".repeat(2000), "a@b.org").unwrap().contains("too long"));
        assert_eq!(password_problem("correct horse", "a@b.org"), None);
    }

    #[test]
    fn emails_are_checked_before_mail_is_sent() {
        assert!(email_problem("").is_some());
        assert!(email_problem("no-at-sign").is_some());
        assert!(email_problem("a b@example.org").is_some());
        assert_eq!(email_problem("new.person@example.org"), None);
    }

    #[test]
    fn lock_message_rounds_up_to_minutes() {
        let refusal = Refusal::locked(chrono::Utc::now() + chrono::Duration::seconds(61));
        assert!(refusal.message.contains("2 minutes"), "{}", refusal.message);
        let refusal = Refusal::locked(chrono::Utc::now() + chrono::Duration::seconds(20));
        assert!(refusal.message.contains("1 minute."), "{}", refusal.message);
    }
}
