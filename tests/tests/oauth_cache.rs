//! The token-check cache (api/src/token_cache.rs): a token revoked through this server is refused on the
//! next request, one revoked behind its back (another replica, plain SQL) within 5 s, and a cached token stops
//! working exactly when it expires.

use jhe_tests::{TestServer, seeded};
use std::time::{Duration, Instant};

const PROFILE: &str = "/api/v1/users/profile";
/// The issue-6 bound for a revocation made elsewhere.
const REPLICA_BOUND: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

#[tokio::test]
async fn a_token_revoked_through_this_server_is_refused_on_the_next_request() {
    let server = TestServer::start().await.unwrap();
    let mary_token = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary_token, "cache").await;

    let token = server.client_credentials_token(&key, None).await;
    // twice: the second answer comes from the cache
    assert_eq!(server.get(PROFILE, &token).await.status, 200);
    assert_eq!(server.get(PROFILE, &token).await.status, 200);

    let revoked = reqwest::Client::new()
        .post(format!("{}/o/revoke_token/", server.base))
        .header("authorization", format!("Basic {key}"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let refused = server.get(PROFILE, &token).await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);
    // other tokens are unaffected
    assert_eq!(server.get(PROFILE, &mary_token).await.status, 200);
}

#[tokio::test]
async fn a_token_revoked_in_the_database_is_refused_within_five_seconds() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::MEGAN).await;
    assert_eq!(server.get(PROFILE, &token).await.status, 200);
    assert_eq!(server.get(PROFILE, &token).await.status, 200);

    // what another replica's revocation does: the row goes, this server's cache is not told
    let deleted = sqlx::query("DELETE FROM access_tokens WHERE token_sha256 = $1")
        .bind(&jhe_catalog::token_sha256(&token)[..])
        .execute(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    let revoked_at = Instant::now();
    loop {
        let status = server.get(PROFILE, &token).await.status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(revoked_at.elapsed() < REPLICA_BOUND, "a revoked token still worked after {:?}", revoked_at.elapsed());
        tokio::time::sleep(POLL).await;
    }
    // and the refusal sticks (a negative entry, then the database again)
    assert_eq!(server.get(PROFILE, &token).await.status, 401);
}

#[tokio::test]
async fn a_cached_token_stops_working_when_it_expires() {
    let server = TestServer::start().await.unwrap();
    let issued =
        jhe_catalog::create_token_for_email(&server.db.pool, seeded::VICTOR, chrono::Duration::milliseconds(1500))
            .await
            .unwrap();
    assert_eq!(server.get(PROFILE, &issued.token).await.status, 200);
    // wait (by polling, so the entry is refreshed as often as possible) until the expiry has passed
    while chrono::Utc::now() <= issued.expires_at {
        let status = server.get(PROFILE, &issued.token).await.status;
        if chrono::Utc::now() < issued.expires_at - chrono::Duration::milliseconds(200) {
            assert_eq!(status, 200, "the token is still valid");
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        server.get(PROFILE, &issued.token).await.status,
        401,
        "an expired token must not be served from the cache"
    );
}
