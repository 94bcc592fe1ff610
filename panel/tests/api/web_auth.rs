//! Accounts through the real pages: sign up with the verification mail read from a real SMTP
//! server, log in and out, rate limits, password reset, TOTP, CSRF, and the outbox worker.

use crate::helpers::{client, csrf_of, spawn_web_app};

#[tokio::test]
async fn sign_up_verify_log_in_and_out() {
    let app = spawn_web_app().await;
    let c = client();
    // Before verifying, the password is right but the account cannot log in yet.
    let (s, _, body) =
        app.submit(&c, "/signup", "/signup", &[("email", "Ana@Example.com"), ("password", "correct horse battery"), ("name", "Ana")]).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Check your email"));
    let (s, _, body) = app.submit(&c, "/login", "/login", &[("email", "ana@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("confirm your email address first"), "{body}");

    assert!(body.contains("id=\"resend\""), "offers a new link: {body}");
    let first = app.smtp.wait_for("ana@example.com", "Confirm your email").await;
    let first_path = first.link("/verify/").unwrap().strip_prefix(&app.address).unwrap().to_string();
    // A new link replaces the first one.
    let (s, _, body) = app.submit(&c, "/login", "/verify/resend", &[("email", "ana@example.com")]).await;
    assert_eq!(s, 200, "{body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.smtp.mails().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second mail");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (s, _) = app.get(&c, &first_path).await;
    assert_eq!(s, 422, "the first link no longer works");
    let mail = app.smtp.mails().pop().unwrap();
    let link = mail.link("/verify/").unwrap();
    let path = link.strip_prefix(&app.address).unwrap().to_string();
    // Opening the link does not use it (mail scanners); the button does, once.
    let (s, _) = app.get(&c, &path).await;
    assert_eq!(s, 200);
    let (s, loc, _) = app.submit(&c, &path, &path, &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=verified"));
    let (s, body) = app.get(&c, &path).await;
    assert_eq!(s, 422, "a used link is refused");
    assert!(body.contains("expired or was already used"));

    let (s, loc, _) = app.submit(&c, "/login", "/login", &[("email", "ana@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"));
    let (s, body) = app.get(&c, "/account").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("ana@example.com"));

    // The cookie is HttpOnly, SameSite=Lax, and signed.
    let r = client().get(app.url("/login")).send().await.unwrap();
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set.starts_with("vessel_session=") && set.contains("HttpOnly") && set.contains("SameSite=Lax"), "{set}");

    let (s, loc, _) = app.submit(&c, "/account", "/logout", &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=logged_out"));
    let (s, _) = app.get(&c, "/account").await;
    assert_eq!(s, 303, "logged out: the account page asks to log in again");

    // A second sign-up with the same address changes nothing and says the same.
    let (s, _, body) = app
        .submit(&client(), "/signup", "/signup", &[("email", "ana@example.com"), ("password", "another password!"), ("name", "X")])
        .await;
    assert_eq!(s, 200);
    assert!(body.contains("Check your email"));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE email = 'ana@example.com'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn bad_sign_up_input_is_shown_on_the_form_not_a_500() {
    let app = spawn_web_app().await;
    let c = client();
    let (s, _, body) = app.submit(&c, "/signup", "/signup", &[("email", "not-an-address"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("is not an email address"), "{body}");
    let (s, _, body) = app.submit(&c, "/signup", "/signup", &[("email", "bo@example.com"), ("password", "short")]).await;
    assert_eq!(s, 422);
    assert!(body.contains("at least 12 characters"), "{body}");
    // Unknown paths and malformed ids are the 404 page.
    for p in ["/nothing-here", "/static/nope.css"] {
        let (s, body) = app.get(&c, p).await;
        assert_eq!(s, 404, "{p}");
        assert!(body.contains("There is nothing here"), "{p}: {body}");
    }
    // A form missing a field entirely is a 400 page, not a 500.
    let (s, _, body) = app.submit(&c, "/signup", "/signup", &[("email", "bo@example.com")]).await;
    assert_eq!(s, 400, "{body}");
}

#[tokio::test]
async fn forms_refuse_a_missing_or_wrong_csrf_token_and_change_nothing() {
    let app = spawn_web_app().await;
    let c = client();
    let (_, html) = app.get(&c, "/signup").await;
    let good = csrf_of(&html);
    for csrf in [None, Some("wrong"), Some(&good[..good.len() - 1])] {
        let mut form = vec![("email", "eve@example.com"), ("password", "correct horse battery")];
        if let Some(t) = csrf {
            form.push(("csrf", t));
        }
        let (s, _, body) = app.post(&c, "/signup", &form).await;
        assert_eq!(s, 403, "{csrf:?}");
        assert!(body.contains("nothing was changed"), "{body}");
    }
    // Another visitor's token is not this visitor's.
    let (_, other) = app.get(&client(), "/signup").await;
    let (s, _, _) =
        app.post(&c, "/signup", &[("email", "eve@example.com"), ("password", "correct horse battery"), ("csrf", &csrf_of(&other))]).await;
    assert_eq!(s, 403);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts").fetch_one(&app.pool).await.unwrap();
    assert_eq!(n, 0, "no refused form created anything");
}

#[tokio::test]
async fn log_in_is_rate_limited_per_account_and_per_address() {
    let app = spawn_web_app().await;
    let c = app.customer("rate@example.com").await;
    drop(c);
    let c = client();
    for _ in 0..panel::auth::MAX_FAILURES_PER_ACCOUNT {
        let (s, _, _) = app.submit(&c, "/login", "/login", &[("email", "rate@example.com"), ("password", "wrong password!!")]).await;
        assert_eq!(s, 422);
    }
    // Now even the right password is refused for the rest of the window.
    let (s, _, body) = app.submit(&c, "/login", "/login", &[("email", "rate@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 429, "{body}");
    assert!(body.contains("too many failed attempts"), "{body}");
    // The counters are rows in PostgreSQL, so every panel process sees them.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE scope = 'account' AND key = 'rate@example.com'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(n, panel::auth::MAX_FAILURES_PER_ACCOUNT);

    // Per address: guesses spread over many accounts from one address are stopped too.
    for i in 0..panel::auth::MAX_FAILURES_PER_ADDRESS {
        sqlx::query("INSERT INTO login_failures (scope, key) VALUES ('address', '127.0.0.1')").execute(&app.pool).await.unwrap();
        let _ = i;
    }
    let (s, _, _) = app.submit(&c, "/login", "/login", &[("email", "someone-else@example.com"), ("password", "whatever password")]).await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn password_reset_is_single_use_and_signs_out_everywhere() {
    let app = spawn_web_app().await;
    let old = app.customer("reset@example.com").await;
    let c = client();
    let (s, _, body) = app.submit(&c, "/reset", "/reset", &[("email", "reset@example.com")]).await;
    assert_eq!(s, 200);
    assert!(body.contains("If an account uses that address"));
    // An unknown address gets the same answer and no mail.
    let (s, _, body2) = app.submit(&c, "/reset", "/reset", &[("email", "nobody@example.com")]).await;
    assert_eq!((s, body2.contains("If an account uses that address")), (200, true));

    let mail = app.smtp.wait_for("reset@example.com", "Choose a new password").await;
    let path = mail.link("/reset/").unwrap().strip_prefix(&app.address).unwrap().to_string();
    let (s, _, body) = app.submit(&c, &path, &path, &[("password", "short")]).await;
    assert_eq!(s, 422, "{body}");
    let (s, loc, _) = app.submit(&c, &path, &path, &[("password", "a brand new password")]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=reset"));
    let (s, _) = app.get(&c, &path).await;
    assert_eq!(s, 422, "the link works once");
    // The token is stored only as a hash.
    let token = path.rsplit('/').next().unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM account_tokens WHERE token_sha256 = $1").bind(token).fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0);
    // The session from before the reset is gone.
    let (s, _) = app.get(&old, "/account").await;
    assert_eq!(s, 303);
    let (s, loc, _) = app.submit(&c, "/login", "/login", &[("email", "reset@example.com"), ("password", "a brand new password")]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"));
    assert!(app.smtp.mails().iter().all(|m| !m.to.contains(&"nobody@example.com".to_string())));
}

#[tokio::test]
async fn totp_enrolment_and_log_in_with_a_code() {
    let app = spawn_web_app().await;
    let c = app.customer("totp@example.com").await;
    let (s, loc, _) = app.submit(&c, "/account", "/account/totp/begin", &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/account"));
    let (_, html) = app.get(&c, "/account").await;
    let secret = html.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    assert!(html.contains("otpauth://totp/Vessel:totp%40example.com"), "{html}");
    // A wrong code does not enable it.
    let (s, _, _) = app.submit(&c, "/account", "/account/totp/confirm", &[("code", "000000")]).await;
    assert_eq!(s, 422);
    let code = panel::auth::current_totp_code(&secret, "totp@example.com").unwrap();
    let (_, html) = app.get(&c, "/account").await;
    assert!(html.contains("id=\"totp-qr\"><svg") && html.contains("</svg>"), "a QR code to scan: {html}");
    let (s, _, codes_page) = app.submit(&c, "/account", "/account/totp/confirm", &[("code", &code)]).await;
    assert_eq!(s, 200, "{codes_page}");
    assert!(codes_page.contains("/account?done=totp_on"), "{codes_page}");
    let recovery = recovery_codes_of(&codes_page);
    assert_eq!(recovery.len(), panel::auth::RECOVERY_CODES, "{codes_page}");

    // Logging in now asks for a code, and the half-logged-in session grants nothing.
    let c2 = client();
    let (s, loc, _) = app.submit(&c2, "/login", "/login", &[("email", "totp@example.com"), ("password", "correct horse battery")]).await;
    assert_eq!(s, 303);
    assert!(loc.starts_with("/login/totp"), "{loc}");
    let (s, _) = app.get(&c2, "/account").await;
    assert_eq!(s, 303, "no access before the code");
    let (s, _, _) = app.submit(&c2, "/login/totp", "/login/totp", &[("code", "123456x")]).await;
    assert_eq!(s, 422);
    // The enrolment code is spent; the next 30-second step's code is accepted (clock skew).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = panel::auth::totp_code_at(&secret, "totp@example.com", now + 30).unwrap();
    let (s, loc, _) = app.submit(&c2, "/login/totp", "/login/totp", &[("code", &code)]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"));
    let (s, _) = app.get(&c2, "/account").await;
    assert_eq!(s, 200);
    // The same code does not work twice (a shoulder-surfed code is spent).
    let c3 = client();
    let (s, loc, _) = app.submit(&c3, "/login", "/login", &[("email", "totp@example.com"), ("password", "correct horse battery")]).await;
    assert!(s == 303 && loc.starts_with("/login/totp"));
    let (s, _, body) = app.submit(&c3, "/login/totp", "/login/totp", &[("code", &code)]).await;
    assert_eq!(s, 422, "a replayed code is refused: {body}");

    // A recovery code logs in once in place of the app's code (typed in capitals, even); only
    // its hash is stored; the same code is refused the second time.
    let (s, loc, _) = app.submit(&c3, "/login/totp", "/login/totp", &[("code", &recovery[0].to_uppercase())]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"), "a recovery code logs in");
    let stored: Vec<String> = sqlx::query_scalar("SELECT code_sha256 FROM totp_recovery_codes").fetch_all(&app.pool).await.unwrap();
    assert_eq!(stored.len(), panel::auth::RECOVERY_CODES);
    for r in &recovery {
        let bare = r.replace('-', "");
        assert!(!stored.iter().any(|h| h.contains(&bare) || h.contains(r.as_str())), "stored hashed");
    }
    let c4 = client();
    let (s, loc, _) = app.submit(&c4, "/login", "/login", &[("email", "totp@example.com"), ("password", "correct horse battery")]).await;
    assert!(s == 303 && loc.starts_with("/login/totp"));
    let (s, _, _) = app.submit(&c4, "/login/totp", "/login/totp", &[("code", &recovery[0])]).await;
    assert_eq!(s, 422, "a recovery code works once");
    let (_, html) = app.get(&c, "/account").await;
    assert!(html.contains(&format!("id=\"recovery-left\">{}<", panel::auth::RECOVERY_CODES - 1)), "{html}");
    // New codes replace the old ones (with a code from the app; the steps used so far are
    // forgotten here, as if a minute had passed, so the current code is unused).
    sqlx::query("UPDATE accounts SET totp_last_step = NULL WHERE email = 'totp@example.com'").execute(&app.pool).await.unwrap();
    let code = panel::auth::current_totp_code(&secret, "totp@example.com").unwrap();
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/recovery-codes", &[("code", &code)]).await;
    assert_eq!(s, 200, "{page}");
    let fresh = recovery_codes_of(&page);
    let (s, loc, _) = app.submit(&c4, "/login/totp", "/login/totp", &[("code", &recovery[1])]).await;
    assert_eq!(s, 422, "an old code stopped working: {loc}");
    let (s, loc, _) = app.submit(&c4, "/login/totp", "/login/totp", &[("code", &fresh[0])]).await;
    assert_eq!((s, loc.as_str()), (303, "/servers"));
}

/// Enrols `email` (a logged-in customer) in two-factor; returns the secret and the recovery codes.
async fn enrol(app: &crate::helpers::WebApp, c: &reqwest::Client, email: &str) -> (String, Vec<String>) {
    let (s, _, _) = app.submit(c, "/account", "/account/totp/begin", &[]).await;
    assert_eq!(s, 303);
    let (_, html) = app.get(c, "/account").await;
    let secret = html.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let code = panel::auth::current_totp_code(&secret, email).unwrap();
    let (s, _, page) = app.submit(c, "/account", "/account/totp/confirm", &[("code", &code)]).await;
    assert_eq!(s, 200, "{page}");
    (secret, recovery_codes_of(&page))
}

async fn stored_recovery_hashes(app: &crate::helpers::WebApp) -> Vec<String> {
    sqlx::query_scalar("SELECT code_sha256 FROM totp_recovery_codes ORDER BY code_sha256").fetch_all(&app.pool).await.unwrap()
}

async fn totp_on(app: &crate::helpers::WebApp, email: &str) -> bool {
    sqlx::query_scalar("SELECT totp_enabled_at IS NOT NULL FROM accounts WHERE email = $1").bind(email).fetch_one(&app.pool).await.unwrap()
}

/// Review findings on two-factor: a session and its CSRF token alone cannot make new recovery
/// codes (a current code from the app is needed); turning two-factor off refuses a code that
/// was already used (the enrolment's) and counts wrong codes under the log-in limits, so the
/// sixth try is refused even with a right code. (Before: new codes for any session; any code of
/// the current window turned it off, replayed or after any number of guesses.)
#[tokio::test]
async fn changing_two_factor_needs_a_fresh_code_under_the_log_in_limits() {
    let app = spawn_web_app().await;
    let email = "second@example.com";
    let c = app.customer(email).await;
    let (secret, _) = enrol(&app, &c, email).await;
    let before = stored_recovery_hashes(&app).await;

    // (a) New recovery codes with the session alone: refused, the codes unchanged.
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/recovery-codes", &[]).await;
    assert_eq!(s, 422, "no code, no new recovery codes: {page}");
    assert!(!page.contains("id=\"recovery-codes\""), "{page}");
    assert_eq!(stored_recovery_hashes(&app).await, before);
    // With the next step's code (the enrolment spent the current one): fresh codes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let next = panel::auth::totp_code_at(&secret, email, now + 30).unwrap();
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/recovery-codes", &[("code", &next)]).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(recovery_codes_of(&page).len(), panel::auth::RECOVERY_CODES);
    assert_ne!(stored_recovery_hashes(&app).await, before);

    // (b) The code just used cannot be replayed to turn two-factor off.
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/disable", &[("code", &next)]).await;
    assert_eq!(s, 422, "a replayed code: {page}");
    assert!(totp_on(&app, email).await);
    // Wrong guesses count like log-in failures (two so far: the missing and the replayed code).
    for guess in ["000000", "111111", "222222"] {
        let (s, _, _) = app.submit(&c, "/account", "/account/totp/disable", &[("code", guess)]).await;
        assert_eq!(s, 422);
    }
    // The steps are forgotten (as if minutes had passed): the current code is unused and right,
    // yet the limit is reached and it is refused before it is checked.
    sqlx::query("UPDATE accounts SET totp_last_step = NULL WHERE email = $1").bind(email).execute(&app.pool).await.unwrap();
    let code = panel::auth::current_totp_code(&secret, email).unwrap();
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/disable", &[("code", &code)]).await;
    assert_eq!(s, 422, "{page}");
    assert!(page.contains("try again in"), "the limit is named: {page}");
    assert!(totp_on(&app, email).await, "still on after the sixth try");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures").fetch_one(&app.pool).await.unwrap();
    assert!(recorded > 0, "the failures were recorded where log-in counts them");
}

/// Turning two-factor on and making its recovery codes are one transaction: when storing the
/// codes fails, two-factor stays off and the code is not spent, so trying again works.
/// (Before: two-factor was committed on, then the codes failed: on, with no recovery codes.)
#[tokio::test]
async fn two_factor_is_never_on_without_its_recovery_codes() {
    let app = spawn_web_app().await;
    let email = "atomic@example.com";
    let c = app.customer(email).await;
    let (s, _, _) = app.submit(&c, "/account", "/account/totp/begin", &[]).await;
    assert_eq!(s, 303);
    let (_, html) = app.get(&c, "/account").await;
    let secret = html.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    // Storing recovery codes fails (this test's own database).
    sqlx::raw_sql(
        "CREATE FUNCTION fail_codes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
         CREATE TRIGGER fail_codes BEFORE INSERT ON totp_recovery_codes FOR EACH ROW EXECUTE FUNCTION fail_codes();",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let code = panel::auth::current_totp_code(&secret, email).unwrap();
    let (s, _, _) = app.submit(&c, "/account", "/account/totp/confirm", &[("code", &code)]).await;
    assert_eq!(s, 500);
    assert!(!totp_on(&app, email).await, "two-factor must not be on without recovery codes");
    let step: Option<i64> =
        sqlx::query_scalar("SELECT totp_last_step FROM accounts WHERE email = $1").bind(email).fetch_one(&app.pool).await.unwrap();
    assert_eq!(step, None, "the code is not spent");
    sqlx::raw_sql("DROP TRIGGER fail_codes ON totp_recovery_codes").execute(&app.pool).await.unwrap();
    let (s, _, page) = app.submit(&c, "/account", "/account/totp/confirm", &[("code", &code)]).await;
    assert_eq!(s, 200, "{page}");
    assert!(totp_on(&app, email).await);
    assert_eq!(stored_recovery_hashes(&app).await.len(), panel::auth::RECOVERY_CODES);
}

/// The codes on a recovery-codes page.
fn recovery_codes_of(html: &str) -> Vec<String> {
    let list = html.split("id=\"recovery-codes\">").nth(1).expect("a list of recovery codes").split("</ul>").next().unwrap();
    list.split("<code>").skip(1).map(|c| c.split('<').next().unwrap().to_string()).collect()
}

/// Sign-up, password reset and "send the link again" are limited per client address and per
/// target address, counted before anything is done: a parallel burst of 20 reset requests for
/// one address mails it 3 times (before: 20 mails), and one client address gets 10 mail
/// requests per window in all.
#[tokio::test]
async fn mail_requests_are_rate_limited_atomically() {
    let app = spawn_web_app().await;
    // Signing up is the first mail request from this client address.
    let _victim = app.customer("victim@example.com").await;
    let c = client();
    let (_, html) = app.get(&c, "/reset").await;
    let csrf = csrf_of(&html);
    let burst = (0..20).map(|_| {
        let (c, url, csrf) = (c.clone(), app.url("/reset"), csrf.clone());
        tokio::spawn(async move {
            c.post(url).form(&[("email", "victim@example.com"), ("csrf", csrf.as_str())]).send().await.unwrap().status().as_u16()
        })
    });
    let mut statuses = Vec::new();
    for t in burst.collect::<Vec<_>>() {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), panel::auth::MAX_MAILS_PER_TARGET as usize, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let mails: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE to_address = 'victim@example.com' AND template = 'password_reset'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(mails, panel::auth::MAX_MAILS_PER_TARGET, "three reset mails, not twenty");
    let (s, _, body) = app.submit(&c, "/reset", "/reset", &[("email", "VICTIM@example.com")]).await;
    assert_eq!(s, 429, "the same address in other letters: {body}");
    assert!(body.contains("try again in"), "{body}");

    // The client address: 4 used (the sign-up and 3 resets); 6 more mail requests of any kind, then refused.
    for i in 0..(panel::auth::MAX_MAILS_PER_ADDRESS - panel::auth::MAX_MAILS_PER_TARGET - 1) {
        let email = format!("new{i}@example.com");
        let (s, _, body) = if i % 2 == 0 {
            app.submit(&c, "/signup", "/signup", &[("email", &email), ("password", "correct horse battery"), ("name", "N")]).await
        } else {
            app.submit(&c, "/login", "/verify/resend", &[("email", &email)]).await
        };
        assert_eq!(s, 200, "request {i}: {body}");
    }
    let (s, _, body) = app
        .submit(&c, "/signup", "/signup", &[("email", "one-more@example.com"), ("password", "correct horse battery"), ("name", "N")])
        .await;
    assert_eq!(s, 429, "{body}");
    let made: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts WHERE email = 'one-more@example.com'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(made, 0, "a refused sign-up creates nothing");
}

/// The provider requires two-factor for admins and resellers: an admin without it is sent to
/// the security page (QR code there), every admin page redirects until it is on; customers are
/// not affected; turning it on with the app's code opens the admin area again.
#[tokio::test]
async fn admins_can_be_required_to_use_two_factor() {
    let app = spawn_web_app().await;
    let admin = app.admin("root@example.com").await;
    let customer = app.customer("plain@example.com").await;
    let (s, _) = app.get(&admin, "/admin/security").await;
    assert_eq!(s, 200);
    let (s, loc, body) = app.submit(&admin, "/admin/security", "/admin/security", &[("require_staff_two_factor", "on")]).await;
    assert_eq!((s, loc.as_str()), (303, "/admin/security?done=saved"), "{body}");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'security.staff_two_factor'").fetch_one(&app.pool).await.unwrap();
    assert_eq!(audit, 1);

    for path in ["/admin", "/admin/customers", "/admin/security"] {
        let r = admin.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/account/security?done=need_2fa", "{path}");
    }
    let (s, _) = app.get(&customer, "/servers").await;
    assert_eq!(s, 200, "customers are not affected");

    let (s, html) = app.get(&admin, "/account/security").await;
    assert_eq!(s, 200);
    assert!(html.contains("id=\"two-factor-required\""), "{html}");
    let (s, loc, _) = app.submit(&admin, "/account/security", "/account/totp/begin", &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/account/security"));
    let (_, html) = app.get(&admin, "/account/security").await;
    assert!(html.contains("id=\"totp-qr\"><svg"), "{html}");
    let secret = html.split("id=\"totp-secret\">").nth(1).unwrap().split('<').next().unwrap().to_string();
    let code = panel::auth::current_totp_code(&secret, "root@example.com").unwrap();
    let (s, _, page) = app.submit(&admin, "/account/security", "/account/totp/confirm", &[("code", &code)]).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(recovery_codes_of(&page).len(), panel::auth::RECOVERY_CODES);
    let (s, _) = app.get(&admin, "/admin").await;
    assert_eq!(s, 200, "with two-factor on, the admin area opens");
}

#[tokio::test]
async fn the_outbox_worker_retries_with_backoff_when_smtp_is_down() {
    let pool = crate::helpers::fresh_pool().await;
    let mut tx = pool.begin().await.unwrap();
    let to = panel::accounts::Email::parse("late@example.com").unwrap();
    panel::outbox::enqueue(&mut tx, &to, "invoice_issued", serde_json::json!({"number": "2026-000007"}), Some("k1".into())).await.unwrap();
    panel::outbox::enqueue(&mut tx, &to, "no_such_template", serde_json::json!({}), None).await.unwrap();
    tx.commit().await.unwrap();
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut s = panel::config::Settings::load(None).unwrap().smtp;
    s.port = port;
    let mailer = panel::email::Mailer::new(&s).unwrap();
    assert_eq!(panel::email::deliver_due(&pool, &mailer, 10).await.unwrap(), 0);
    let rows: Vec<(String, i32, Option<String>, bool)> =
        sqlx::query_as("SELECT template, attempts, last_error, run_after > now() + interval '20 seconds' FROM email_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows[0].1, 1);
    assert!(rows[0].2.as_deref().unwrap_or("").contains("smtp"), "{rows:?}");
    assert!(rows[0].3, "retried later, not at once");
    assert_eq!(rows[1].1, panel::email::MAX_ATTEMPTS, "an unknown template is given up at once");

    // Once the server is back and the row is due, it is sent exactly once.
    let sink = crate::smtp::SmtpSink::start().await;
    s.port = sink.port;
    let mailer = panel::email::Mailer::new(&s).unwrap();
    sqlx::query("UPDATE email_outbox SET run_after = now()").execute(&pool).await.unwrap();
    assert_eq!(panel::email::deliver_due(&pool, &mailer, 10).await.unwrap(), 1);
    assert_eq!(panel::email::deliver_due(&pool, &mailer, 10).await.unwrap(), 0);
    let m = sink.wait_for("late@example.com", "Invoice 2026-000007").await;
    assert!(m.text().contains("2026-000007"));
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn housekeeping_forgets_expired_sign_in_state_only() {
    let pool = crate::helpers::fresh_pool().await;
    let id: uuid::Uuid = sqlx::query_scalar("INSERT INTO accounts (role, email) VALUES ('customer', 'h@example.com') RETURNING id")
        .fetch_one(&pool)
        .await
        .unwrap();
    let hex = |c: char| c.to_string().repeat(64);
    for (t, expires) in [(hex('a'), "now() - interval '1 minute'"), (hex('b'), "now() + interval '1 hour'")] {
        sqlx::query(&format!("INSERT INTO sessions (token_sha256, account_id, expires_at) VALUES ($1, $2, {expires})"))
            .bind(t)
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    for (t, created, expires, used) in [
        (hex('c'), "now() - interval '3 days'", "now() - interval '2 days'", "NULL"),
        (hex('d'), "now() - interval '1 hour'", "now() + interval '1 hour'", "NULL"),
        (hex('e'), "now() - interval '3 days'", "now() + interval '1 hour'", "now() - interval '2 days'"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO account_tokens (token_sha256, account_id, purpose, created_at, expires_at, used_at) VALUES ($1, $2, 'verify_email', {created}, {expires}, {used})"
        ))
        .bind(t).bind(id).execute(&pool).await.unwrap();
    }
    sqlx::query("INSERT INTO login_failures (scope, key, at) VALUES ('account', 'h@example.com', now() - interval '1 hour'), ('account', 'h@example.com', now())")
        .execute(&pool).await.unwrap();
    assert_eq!(panel::auth::prune(&pool).await.unwrap(), 4);
    assert_eq!(panel::auth::prune(&pool).await.unwrap(), 0, "idempotent");
    let left: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM account_tokens), (SELECT count(*) FROM login_failures)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, (1, 1, 1));
}

#[tokio::test]
async fn two_outbox_workers_never_send_one_mail_twice() {
    let pool = crate::helpers::fresh_pool().await;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..30 {
        let to = panel::accounts::Email::parse(&format!("m{i}@example.com")).unwrap();
        panel::outbox::enqueue(&mut tx, &to, "payment_received", serde_json::json!({"amount_minor": 100, "currency": "EUR"}), None)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let sink = crate::smtp::SmtpSink::start().await;
    let mut s = panel::config::Settings::load(None).unwrap().smtp;
    s.port = sink.port;
    let mailer = panel::email::Mailer::new(&s).unwrap();
    let (a, b) = tokio::join!(
        async {
            let mut n = 0;
            for _ in 0..10 {
                n += panel::email::deliver_due(&pool, &mailer, 4).await.unwrap();
            }
            n
        },
        async {
            let mut n = 0;
            for _ in 0..10 {
                n += panel::email::deliver_due(&pool, &mailer, 4).await.unwrap();
            }
            n
        },
    );
    assert_eq!(a + b, 30);
    let mails = sink.mails();
    assert_eq!(mails.len(), 30);
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 30, "every mail once");
    assert!(mails[0].subject().contains("1.00 EUR"), "{}", mails[0].subject());
}

#[tokio::test]
async fn the_forwarded_address_counts_only_behind_a_trusted_proxy() {
    for trust in [false, true] {
        let app = crate::helpers::spawn_web_app_with(|s| s.http.trust_forwarded_for = trust).await;
        let c = client();
        let (_, html) = app.get(&c, "/login").await;
        let r = c
            .post(app.url("/login"))
            .header("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
            .form(&[("email", "x@example.com"), ("password", "wrong password!!"), ("csrf", &csrf_of(&html))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let key: String = sqlx::query_scalar("SELECT key FROM login_failures WHERE scope = 'address'").fetch_one(&app.pool).await.unwrap();
        // The proxy's own entry (the last one) is used, never one the visitor wrote before it.
        assert_eq!(key, if trust { "203.0.113.7" } else { "127.0.0.1" });
    }
}

/// Issue 15: a burst of parallel guesses checks at most the limit's number of passwords (the
/// attempt is counted *before* the check, atomically), refuses the rest with 429 and never a
/// 500; and the rightful owner, on another address, still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_check_at_most_the_limit_and_the_owner_elsewhere_still_logs_in() {
    let app = crate::helpers::spawn_web_app_with(|s| s.http.trust_forwarded_for = true).await;
    drop(app.customer("burst@example.com").await);
    let attacker = client();
    let (_, page) = app.get(&attacker, "/login").await;
    let csrf = csrf_of(&page);
    let guesses = (0..40).map(|i| {
        let (c, url, csrf) = (attacker.clone(), app.url("/login"), csrf.clone());
        async move {
            let pw = format!("wrong guess number {i}");
            let form = [("email", "burst@example.com"), ("password", pw.as_str()), ("csrf", csrf.as_str())];
            c.post(url).header("X-Forwarded-For", "198.51.100.7").form(&form).send().await.unwrap().status().as_u16()
        }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 422).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + limited, 40, "only 'wrong password' or 'too many', never an error: {statuses:?}");
    assert!(checked as i64 <= panel::auth::MAX_FAILURES_PER_ACCOUNT, "{checked} passwords were checked: {statuses:?}");
    // The owner, from another address, is not locked out by the attacker's tries.
    let owner = client();
    let (_, page) = app.get(&owner, "/login").await;
    let form = [("email", "burst@example.com"), ("password", "correct horse battery"), ("csrf", csrf_of(&page).leak() as &str)];
    let r = owner.post(app.url("/login")).header("X-Forwarded-For", "203.0.113.9").form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "the owner elsewhere logs in");
    // The attacker's address stays refused, even with the right password.
    let form = [("email", "burst@example.com"), ("password", "correct horse battery"), ("csrf", csrf.as_str())];
    let r = attacker.post(app.url("/login")).header("X-Forwarded-For", "198.51.100.7").form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
}

/// Issue 15: after log-in, `next` leads only to a path of this site, parsed as a browser
/// would: `/%09/evil.example` (a tab a browser drops, making `//evil.example`) stays home, and a
/// `%0a` is no 500.
#[tokio::test]
async fn next_after_log_in_never_leaves_the_site() {
    let app = spawn_web_app().await;
    drop(app.customer("next@example.com").await);
    for (next, expect_home) in [("/\t/evil.example", true), ("//evil.example", true), ("/a\nb", false), ("/invoices?x=1", false)] {
        let c = client();
        let (_, page) = app.get(&c, &format!("/login?next={}", next.replace('\t', "%09").replace('\n', "%0a"))).await;
        let form =
            [("email", "next@example.com"), ("password", "correct horse battery"), ("csrf", csrf_of(&page).leak() as &str), ("next", next)];
        let r = c.post(app.url("/login")).form(&form).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 303, "{next:?}");
        let loc = r.headers().get("location").unwrap().to_str().unwrap().to_string();
        assert!(loc.starts_with('/') && !loc.starts_with("//") && !loc.contains("evil"), "{next:?} -> {loc}");
        assert!(!loc.contains(['\t', '\n', '\r']), "{loc:?}");
        if expect_home {
            assert_eq!(loc, "/servers", "{next:?}");
        }
    }
}

/// Sign-up remembers the plan that was clicked: the catalogue's "Order" leads to the log-in
/// (with `next`), its "Create an account" keeps it, the verification link carries it, and after
/// verifying and logging in the customer is at that plan's order form. A `next` leaving the
/// site is dropped at each step.
#[tokio::test]
async fn sign_up_returns_to_the_plan_that_was_clicked() {
    let app = spawn_web_app().await;
    let c = client();
    let r = c.get(app.url("/order/burst-m")).send().await.unwrap();
    let login = r.headers().get("location").unwrap().to_str().unwrap().to_string();
    assert_eq!(login, "/login?next=%2Forder%2Fburst-m");
    let (_, page) = app.get(&c, &login).await;
    let link_tag = page.split("<a ").find(|a| a.contains("id=\"signup-link\"")).expect("a sign-up link");
    let signup = link_tag.split("href=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#x2f;", "/");
    assert!(signup.contains("next=") && signup.contains("burst-m"), "{signup}");
    let (s, page) = app.get(&c, &signup.replace("&amp;", "&")).await;
    assert_eq!(s, 200);
    assert!(page.contains("name=\"next\" value=\"/order/burst-m\""), "{page}");
    let (s, _, body) = app
        .submit(
            &c,
            "/signup",
            "/signup",
            &[("email", "plan@example.com"), ("password", "correct horse battery"), ("name", "P"), ("next", "/order/burst-m")],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let mail = app.smtp.wait_for("plan@example.com", "Confirm your email").await;
    let link = mail.link("/verify/").expect("a verification link");
    assert!(link.ends_with("?next=%2Forder%2Fburst-m"), "{link}");
    let path = link.strip_prefix(&app.address).unwrap().to_string();
    let (s, page) = app.get(&c, &path).await;
    assert_eq!(s, 200);
    let action = page.split("action=\"").nth(1).unwrap().split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&");
    let (s, loc, body) = app.submit(&c, &path, &action, &[]).await;
    assert_eq!((s, loc.as_str()), (303, "/login?done=verified&next=%2Forder%2Fburst-m"), "{body}");
    let (s, loc, body) = app
        .submit(&c, &loc, "/login", &[("email", "plan@example.com"), ("password", "correct horse battery"), ("next", "/order/burst-m")])
        .await;
    assert_eq!((s, loc.as_str()), (303, "/order/burst-m"), "{body}");
    let (s, page) = app.get(&c, "/order/burst-m").await;
    assert_eq!(s, 200);
    assert!(page.contains("id=\"place-order\""), "the order form: {page}");

    // A hostile `next` is not carried: not in the form, not in the link.
    let c = client();
    let (_, page) = app.get(&c, "/signup?next=//evil.example/x").await;
    assert!(page.contains("name=\"next\" value=\"\""), "{page}");
    let (s, _, _) = app
        .submit(
            &c,
            "/signup",
            "/signup",
            &[("email", "evil@example.com"), ("password", "correct horse battery"), ("name", "E"), ("next", "//evil.example/x")],
        )
        .await;
    assert_eq!(s, 200);
    let mail = app.smtp.wait_for("evil@example.com", "Confirm your email").await;
    let link = mail.link("/verify/").unwrap();
    assert!(!link.contains("next") && !link.contains("evil"), "{link}");
}
