//! WeChat sends (SPEC §7) against a local fake of the WeChat API
//! (`tests/fakes/wechat_api.py`, real paths and answers, every call
//! logged): the platform rules with their reasons, delivery and the
//! timeline events, permanent and transient errcodes, token refresh,
//! subscribe-message consent, scheduling and cancel, refusals.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use serde_json::Value;

struct Fake {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fake {
    fn start() -> Fake {
        Fake::start_with(false)
    }

    /// The fake serving https with tests/fakes/tls/server.pem (CA: ca.pem).
    fn start_tls() -> Fake {
        Fake::start_with(true)
    }

    fn start_with(tls: bool) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.jsonl");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fakes = cohortdb_tests::tests_dir().join("fakes");
        let mut cmd = Command::new("python3");
        cmd.arg(fakes.join("wechat_api.py"))
            .arg(port.to_string())
            .arg(&log);
        if tls {
            cmd.arg(fakes.join("tls/server.pem"))
                .arg(fakes.join("tls/server.key"));
        }
        let child = cmd.spawn().expect("python3");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the fake WeChat API did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Fake {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn control(&self, body: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-X", "POST", "--data-binary", body])
            .arg(format!("http://127.0.0.1:{}/_control", self.port))
            .output()
            .unwrap();
        assert!(out.status.success());
    }

    fn calls(&self, path: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["path"] == path)
            .collect()
    }
}

async fn send(client: &tokio_postgres::Client, sql: &str) -> String {
    simple_rows(client, sql).await[0][0].clone().unwrap()
}

/// Waits until send `id` is done; returns its recipients `openid → (status, reason)`.
async fn finished(client: &tokio_postgres::Client, id: &str) -> Vec<(String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = simple_rows(
            client,
            &format!("SELECT status FROM wechat_sends WHERE send_id = {id}"),
        )
        .await;
        if st[0][0].as_deref() == Some("done") || st[0][0].as_deref() == Some("cancelled") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "send {id} did not finish: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    simple_rows(
        client,
        &format!(
            "SELECT coalesce(openid, ''), status, coalesce(reason, '') FROM wechat_send_recipients \
             WHERE send_id = {id} ORDER BY 1"
        ),
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].clone().unwrap(),
        )
    })
    .collect()
}

fn rec(o: &str, s: &str, r: &str) -> (String, String, String) {
    (o.into(), s.into(), r.into())
}

#[tokio::test]
async fn sends_follow_the_platform_rules() {
    let fake = Fake::start();
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_oa_main', 'wxappid1', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    let accounts = simple_rows(&c, "SELECT * FROM wechat_accounts").await;
    assert!(!format!("{accounts:?}").contains("fake-secret"));
    // fans: o_1, o_2 follow now; o_3 followed 3 days ago; o_4 unfollowed; o_5 never followed
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) VALUES \
         ('o_1', 'wx_oa_main', 'subscribe', now()), \
         ('o_2', 'wx_oa_main', 'subscribe', now()), \
         ('o_3', 'wx_oa_main', 'subscribe', now() - INTERVAL '3 days'), \
         ('o_4', 'wx_oa_main', 'subscribe', now() - INTERVAL '2 days'), \
         ('o_4', 'wx_oa_main', 'unsubscribe', now() - INTERVAL '1 day'), \
         ('o_5', 'wx_oa_main', 'message', now())",
    )
    .await;

    // mass send to all: followers only, one call with clientmsgid
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'all', 'text', '{\"content\": \"hi\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(
        r,
        vec![
            rec("o_1", "sent", ""),
            rec("o_2", "sent", ""),
            rec("o_3", "sent", ""),
            rec("o_4", "skipped", "not_follower"),
            rec("o_5", "skipped", "not_follower"),
        ]
    );
    let mass = fake.calls("/cgi-bin/message/mass/send");
    assert_eq!(mass.len(), 1);
    assert_eq!(
        mass[0]["body"]["touser"],
        serde_json::json!(["o_1", "o_2", "o_3"])
    );
    assert_eq!(mass[0]["body"]["text"]["content"], "hi");
    assert!(mass[0]["body"]["clientmsgid"].is_string());
    let counts = simple_rows(
        &c,
        &format!("SELECT recipients, sent, failed, skipped FROM wechat_sends WHERE send_id = {id}"),
    )
    .await;
    assert_eq!(
        counts[0],
        vec![
            Some("5".into()),
            Some("3".into()),
            Some("0".into()),
            Some("2".into())
        ]
    );
    let timeline = simple_rows(
        &c,
        &format!("SELECT count(*) FROM event_view WHERE event = 'wechat_mass_sent' AND s_send_id = '{id}'"),
    )
    .await;
    assert_eq!(timeline[0][0].as_deref(), Some("3"));

    // monthly limit: o_1 already got 4 this month
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) VALUES \
         ('o_1', 'wx_oa_main', 'wechat_mass_sent', now()), ('o_1', 'wx_oa_main', 'wechat_mass_sent', now()), \
         ('o_1', 'wx_oa_main', 'wechat_mass_sent', now())",
    )
    .await;
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'all', 'text', '{\"content\": \"again\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(r[0], rec("o_1", "skipped", "monthly_limit"));
    assert_eq!(r[1], rec("o_2", "sent", ""));

    // customer-service window: o_3's last inbound event is 3 days old
    let id = send(
        &c,
        "CALL wechat_custom_send('wx_oa_main', 'all', 'text', '{\"content\": \"cs\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(r[2], rec("o_3", "skipped", "outside_48h"));
    assert_eq!(r[0].1, "sent");

    // template: a permanent errcode fails that fan; a transient one is retried
    fake.control(
        r#"{"fail": {"o_2": 43004}, "transient_once": ["o_1"], "expire_token_once": true}"#,
    );
    let id = send(
        &c,
        "CALL wechat_template_send('wx_oa_main', 'all', 'TPL_CART', '{\"first\": {\"value\": \"Hi\"}}', 'https://shop.example.com')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(r[0], rec("o_1", "sent", ""));
    assert_eq!(r[1], rec("o_2", "failed", "errcode 43004"));
    assert_eq!(r[2], rec("o_3", "sent", ""));
    let tpl = fake.calls("/cgi-bin/message/template/send");
    assert!(tpl
        .iter()
        .any(|c| c["body"]["url"] == "https://shop.example.com"));
    // o_1 was called twice (transient), never after success
    let o1 = tpl.iter().filter(|c| c["body"]["touser"] == "o_1").count();
    assert!(o1 >= 2, "{tpl:?}");
    assert!(
        fake.calls("/cgi-bin/token").len() >= 2,
        "token refreshed after 42001"
    );

    // subscribe messages need an unused consent of that template
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date, s_template_id) VALUES \
         ('o_1', 'wx_oa_main', 'subscribe_msg_accept', now(), 'TPL_SUB')",
    )
    .await;
    let id = send(&c, "CALL wechat_subscribe_send('wx_oa_main', 'all', 'TPL_SUB', '{\"thing1\": {\"value\": \"x\"}}')").await;
    let r = finished(&c, &id).await;
    assert_eq!(r[0], rec("o_1", "sent", ""));
    assert_eq!(r[1], rec("o_2", "skipped", "no_consent"));
    let id = send(&c, "CALL wechat_subscribe_send('wx_oa_main', 'all', 'TPL_SUB', '{\"thing1\": {\"value\": \"y\"}}')").await;
    let r = finished(&c, &id).await;
    assert_eq!(
        r[0],
        rec("o_1", "skipped", "no_consent"),
        "the consent was used"
    );

    // a scheduled send can be cancelled before it goes
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'all', 'text', '{\"content\": \"later\"}', '2099-01-01 00:00:00+00')",
    )
    .await;
    let st = simple_rows(
        &c,
        &format!("SELECT status FROM wechat_sends WHERE send_id = {id}"),
    )
    .await;
    assert_eq!(st[0][0].as_deref(), Some("scheduled"));
    exec(&c, &format!("CALL wechat_cancel_send({id})")).await;
    let r = finished(&c, &id).await;
    assert!(r.iter().all(|x| x.1 == "skipped"), "{r:?}");
    assert!(r.iter().any(|x| x.2 == "cancelled"));

    // refusals
    expect_sqlstate(
        &c,
        "CALL wechat_mass_send('nope', 'all', 'text', '{}')",
        "42704",
    )
    .await;
    expect_sqlstate(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'group_nope', 'text', '{}')",
        "42704",
    )
    .await;
    expect_sqlstate(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'all', 'fax', '{}')",
        "22023",
    )
    .await;
    expect_sqlstate(
        &c,
        "CALL wechat_mass_send('wx_oa_main', 'all', 'text', '{not json')",
        "22023",
    )
    .await;
    expect_sqlstate(
        &c,
        "CALL wechat_add_account('wx_oa_main', 'a', 'service', 'http://x', 's')",
        "42710",
    )
    .await;
    expect_sqlstate(
        &c,
        "CALL wechat_add_account('wx_2', 'a', 'enterprise', 'http://x', 's')",
        "22023",
    )
    .await;
}

/// kill -9 while a send is under way, several times: after each restart no
/// fan was called twice, and at the end every recipient is `sent` or
/// `unknown` (the ones in flight at a kill) and the counts add up.
#[tokio::test]
async fn kill_9_during_a_send_never_sends_twice() {
    let fake = Fake::start();
    fake.control(r#"{"latency_ms": 15}"#);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let fans = 400;
    let id;
    {
        let server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        exec(
            &c,
            &format!(
                "CALL wechat_add_account('wx_k', 'wxk', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
                fake.port
            ),
        )
        .await;
        exec(
            &c,
            &format!(
                "INSERT INTO events (openid, channel_id, event, event_date) \
                 SELECT 'f_' || x, 'wx_k', 'subscribe', now() FROM generate_series(1, {fans}) t(x)"
            ),
        )
        .await;
        id = send(
            &c,
            "CALL wechat_template_send('wx_k', 'all', 'TPL', '{\"a\": {\"value\": \"b\"}}')",
        )
        .await;
        drop(c);
        let mut server = server;
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.kill9();
    }
    let mut rounds = 1;
    loop {
        let mut server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        let st = simple_rows(
            &c,
            &format!("SELECT status FROM wechat_sends WHERE send_id = {id}"),
        )
        .await;
        if st[0][0].as_deref() == Some("done") || rounds >= 4 {
            let r = finished(&c, &id).await;
            assert_eq!(r.len(), fans);
            let calls = fake.calls("/cgi-bin/message/template/send");
            let mut per_fan = std::collections::HashMap::new();
            // calls WeChat accepted (a 40001 or -1 answer sent nothing)
            for call in calls.iter().filter(|c| c["errcode"] == 0) {
                *per_fan
                    .entry(call["body"]["touser"].as_str().unwrap().to_string())
                    .or_insert(0) += 1;
            }
            assert!(per_fan.values().all(|n| *n == 1), "a fan was called twice");
            for (openid, status, _) in &r {
                match status.as_str() {
                    "sent" => assert_eq!(
                        per_fan.get(openid),
                        Some(&1),
                        "{openid} sent without a call"
                    ),
                    "unknown" => {}
                    other => panic!("{openid} ended {other}"),
                }
            }
            let counts = simple_rows(
                &c,
                &format!("SELECT recipients, sent + failed + skipped FROM wechat_sends WHERE send_id = {id}"),
            )
            .await;
            let unknown = r.iter().filter(|x| x.1 == "unknown").count();
            assert_eq!(counts[0][0].as_deref(), Some(fans.to_string().as_str()));
            assert_eq!(
                counts[0][1].as_deref(),
                Some((fans - unknown).to_string().as_str())
            );
            let timeline = simple_rows(
                &c,
                &format!("SELECT count(*) FROM event_view WHERE event = 'wechat_template_sent' AND s_send_id = '{id}'"),
            )
            .await;
            assert_eq!(
                timeline[0][0].as_deref(),
                Some((fans - unknown).to_string().as_str())
            );
            break;
        }
        drop(c);
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill9();
        rounds += 1;
    }
}

#[tokio::test]
async fn daily_cap_skips_recipients_beyond_it() {
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "wechat_daily_cap = 3\n").unwrap();
    let server =
        TestServer::start_with(&dir.path().join("d"), &["--config", conf.to_str().unwrap()]);
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_c', 'wxc', 'subscription', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 'c_' || x, 'wx_c', 'subscribe', now() FROM generate_series(1, 5) t(x)",
    )
    .await;
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_c', 'all', 'text', '{\"content\": \"a\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(r.iter().filter(|x| x.1 == "sent").count(), 3, "{r:?}");
    assert_eq!(r.iter().filter(|x| x.2 == "daily_cap").count(), 2, "{r:?}");
    // the cap holds across sends of the day
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_c', 'all', 'text', '{\"content\": \"b\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert!(r.iter().all(|x| x.2 == "daily_cap"), "{r:?}");
}

/// A journey's WeChat step sends through the sender and its rules, once.
#[tokio::test]
async fn journey_wechat_step_sends_once() {
    let fake = Fake::start();
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_j', 'wxj', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        r#"CALL create_journey('j_hello', '{"trigger":{"event":"subscribe"},"steps":[
            {"id":"hi","type":"wechat_template","account":"wx_j","template_id":"TPL_HI","data":{"first":{"value":"welcome"}}}]}')"#,
    )
    .await;
    exec(&c, "CALL publish_journey('j_hello')").await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) VALUES ('fan_1', 'wx_j', 'subscribe', now())",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls = fake.calls("/cgi-bin/message/template/send");
        if !calls.is_empty() {
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0]["body"]["touser"], "fan_1");
            assert_eq!(calls[0]["body"]["template_id"], "TPL_HI");
            break;
        }
        assert!(Instant::now() < deadline, "no template call");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = simple_rows(&c, "SELECT status FROM journey_runs").await;
    assert_eq!(st[0][0].as_deref(), Some("completed"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.calls("/cgi-bin/message/template/send").len(), 1);
}

/// `client_send_id => '…'`: a call repeated after a timeout answers the
/// first call's send; the same key with other arguments is refused; four
/// concurrent retries make one send and one API call per fan.
#[tokio::test]
async fn client_send_id_makes_a_retried_call_create_one_send() {
    let fake = Fake::start();
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_i', 'wxi', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 'i_' || x, 'wx_i', 'subscribe', now() FROM generate_series(1, 3) t(x)",
    )
    .await;
    let call = "CALL wechat_template_send('wx_i', 'all', 'TPL_I', '{\"a\": {\"value\": \"b\"}}', client_send_id => 'order-42')";
    let first = send(&c, call).await;
    assert_eq!(send(&c, call).await, first);
    // bound parameters, as drivers send them
    let row = c
        .query_one(
            "CALL wechat_template_send('wx_i', 'all', 'TPL_I', $1, client_send_id => $2)",
            &[&"{\"a\": {\"value\": \"b\"}}", &"order-42"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0).to_string(), first);
    let e = expect_sqlstate(
        &c,
        "CALL wechat_template_send('wx_i', 'all', 'TPL_OTHER', '{}', client_send_id => 'order-42')",
        "42710",
    )
    .await;
    assert!(e.message.contains("order-42"), "{e:?}");
    expect_sqlstate(
        &c,
        "CALL wechat_template_send('wx_i', 'all', 'TPL_I', '{}', idempotency => 'x')",
        "42883",
    )
    .await;
    // concurrent retries of a new key
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = server.client().await;
        tasks.push(tokio::spawn(async move {
            send(
                &c,
                "CALL wechat_mass_send('wx_i', 'all', 'text', '{\"content\": \"hi\"}', client_send_id => 'mass-7')",
            )
            .await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    finished(&c, &first).await;
    finished(&c, &ids[0]).await;
    let sends = simple_rows(&c, "SELECT count(*) FROM wechat_sends").await;
    assert_eq!(sends[0][0].as_deref(), Some("2"));
    assert_eq!(fake.calls("/cgi-bin/message/template/send").len(), 3);
    // a group audience: only its members
    exec(
        &c,
        "CREATE GROUP group_i2 AS SELECT contact_id AS id FROM identities WHERE id_value = 'i_2'",
    )
    .await;
    let id = send(
        &c,
        "CALL wechat_template_send('wx_i', 'group_i2', 'TPL_G', '{\"a\": {\"value\": \"b\"}}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert_eq!(r, vec![rec("i_2", "sent", "")]);
    assert_eq!(fake.calls("/cgi-bin/message/mass/send").len(), 1);
}

/// A mass call whose connection drops before the answer is made again
/// with the same `clientmsgid`; the fake, like WeChat, answers 45065 to
/// the repeat if the first went through, and every fan gets it once.
#[tokio::test]
async fn a_lost_mass_answer_is_retried_with_its_clientmsgid() {
    let fake = Fake::start();
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_m', 'wxm', 'subscription', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 'm_' || x, 'wx_m', 'subscribe', now() FROM generate_series(1, 5) t(x)",
    )
    .await;
    fake.control(r#"{"drop_once": 1}"#);
    let id = send(
        &c,
        "CALL wechat_mass_send('wx_m', 'all', 'text', '{\"content\": \"hi\"}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert!(r.iter().all(|x| x.1 == "sent"), "{r:?}");
    let calls = fake.calls("/cgi-bin/message/mass/send");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["errcode"], -1000, "the first answer was dropped");
    assert_eq!(calls[1]["errcode"], 45065, "the repeat was recognised");
    assert_eq!(
        calls[0]["body"]["clientmsgid"],
        calls[1]["body"]["clientmsgid"]
    );
}

/// QR codes: `wechat_create_qrcode` asks WeChat for the code and keeps it;
/// a fan's `subscribe` carrying its scene id gets the reply and joins the
/// static group, once per event (also across kill -9), and a later
/// `scan_qrcode` gets its own reply.
#[tokio::test]
async fn qr_code_scans_reply_and_add_to_group_once_per_event() {
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let mut server = TestServer::start_with(&data, &[]);
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_q', 'wxq', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(&c, "CREATE STATIC GROUP group_qr_shop").await;
    exec(
        &c,
        "CREATE GROUP group_dyn AS SELECT id FROM contact_view WHERE city = 'x'",
    )
    .await;
    let made = simple_rows(
        &c,
        r#"CALL wechat_create_qrcode('wx_q', 'shop_1', 'temporary', '3600',
             '{"reply": {"msg_type": "text", "content": {"content": "欢迎光临"}}, "add_to_group": "group_qr_shop"}')"#,
    )
    .await;
    assert_eq!(
        made[0],
        vec![
            Some("shop_1".to_string()),
            Some("TICKET_shop_1".into()),
            Some("http://weixin.qq.com/q/shop_1".into()),
            Some("3600".into())
        ]
    );
    let calls = fake.calls("/cgi-bin/qrcode/create");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["body"]["action_name"], "QR_STR_SCENE");
    assert_eq!(calls[0]["body"]["expire_seconds"], 3600);
    assert_eq!(
        calls[0]["body"]["action_info"]["scene"]["scene_str"],
        "shop_1"
    );
    simple_rows(
        &c,
        "CALL wechat_create_qrcode('wx_q', 'forever', 'permanent')",
    )
    .await;
    assert_eq!(
        fake.calls("/cgi-bin/qrcode/create")[1]["body"]["action_name"],
        "QR_LIMIT_STR_SCENE"
    );
    let rows = simple_rows(
        &c,
        "SELECT qr_id, kind, ticket, expire_at IS NULL FROM wechat_qrcodes ORDER BY qr_id",
    )
    .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][1].as_deref(), Some("permanent"));
    assert_eq!(rows[0][3].as_deref(), Some("t"));
    assert_eq!(rows[1][3].as_deref(), Some("f"));

    // refusals change nothing
    for (sql, code) in [
        (
            "CALL wechat_create_qrcode('wx_nope', 'a', 'temporary')",
            "42704",
        ),
        ("CALL wechat_create_qrcode('wx_q', 'a', 'forever')", "22023"),
        (
            "CALL wechat_create_qrcode('wx_q', 'a b', 'temporary')",
            "22023",
        ),
        (
            "CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '5')",
            "22023",
        ),
        (
            "CALL wechat_create_qrcode('wx_q', 'a', 'permanent', '600')",
            "22023",
        ),
        (
            r#"CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '', '{"welcome": 1}')"#,
            "22023",
        ),
        (
            r#"CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '', '{"add_to_group": "group_none"}')"#,
            "42704",
        ),
        (
            r#"CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '', '{"add_to_group": "group_dyn"}')"#,
            "22023",
        ),
        (
            r#"CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '', '{"reply": {"msg_type": "fax", "content": {}}}')"#,
            "22023",
        ),
        (
            "CALL wechat_create_qrcode('wx_q', 'a', 'temporary', '', 'not json')",
            "22023",
        ),
    ] {
        let e = expect_sqlstate(&c, sql, code).await;
        assert!(!e.message.is_empty());
    }
    // WeChat refusing: a wrong secret cannot get a token
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_bad', 'wxb', 'service', 'http://127.0.0.1:{}', 'wrong')",
            fake.port
        ),
    )
    .await;
    let e = expect_sqlstate(
        &c,
        "CALL wechat_create_qrcode('wx_bad', 'a', 'temporary')",
        "58000",
    )
    .await;
    assert!(e.message.contains("40125"), "{e:?}");
    let n = simple_rows(&c, "SELECT count(*) FROM wechat_qrcodes").await;
    assert_eq!(n[0][0].as_deref(), Some("2"));

    // a fan subscribes through the code
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date, s_qrcode_id) \
         VALUES ('fan_q', 'wx_q', 'subscribe', now(), 'shop_1')",
    )
    .await;
    let replies = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let calls = fake.calls("/cgi-bin/message/custom/send");
            if calls.len() >= n {
                return calls;
            }
            assert!(
                Instant::now() < deadline,
                "{n} replies expected, got {calls:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let calls = replies(1);
    assert_eq!(calls[0]["body"]["touser"], "fan_q");
    assert_eq!(calls[0]["body"]["msgtype"], "text");
    assert_eq!(calls[0]["body"]["text"]["content"], "欢迎光临");
    let members = simple_rows(&c, "SELECT count(*) FROM contact_view WHERE group_qr_shop").await;
    assert_eq!(members[0][0].as_deref(), Some("1"));
    // nothing runs again after a restart
    drop(c);
    server.kill9();
    let server = TestServer::start_with(&data, &[]);
    let c = server.client().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.calls("/cgi-bin/message/custom/send").len(), 1);
    // a scan by the (now following) fan: its own reply
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date, s_qrcode_id) \
         VALUES ('fan_q', 'wx_q', 'scan_qrcode', now(), 'shop_1')",
    )
    .await;
    replies(2);
    // an event naming the code without options does nothing
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date, s_qrcode_id) \
         VALUES ('fan_r', 'wx_q', 'subscribe', now(), 'forever')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fake.calls("/cgi-bin/message/custom/send").len(), 2);
    let members = simple_rows(&c, "SELECT count(*) FROM contact_view WHERE group_qr_shop").await;
    assert_eq!(members[0][0].as_deref(), Some("1"));
}

/// A 20,000-recipient template send and a 20,000-recipient mass send, the
/// rate limit lifted, the server killed with -9 at random moments ten
/// times: no fan is sent a message twice (the fake's log of accepted
/// calls), every recipient ends `sent`, `failed`, `skipped` or `unknown`
/// (mass recipients always `sent`: their calls are repeated under their
/// clientmsgid), and the counts and timeline events add up.
#[tokio::test]
async fn kill_9_ten_times_during_20000_recipient_sends() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let fake = Fake::start();
    fake.control(r#"{"latency_ms": 2}"#);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "wechat_recipients_per_minute = 100000000\n").unwrap();
    let args = ["--config", conf.to_str().unwrap()];
    let fans = 20_000usize;
    let (template_id, mass_id) = {
        let server = TestServer::start_with(&data, &args);
        let c = server.client().await;
        for (acct, kind) in [("wx_t", "service"), ("wx_ms", "subscription")] {
            exec(
                &c,
                &format!(
                    "CALL wechat_add_account('{acct}', '{acct}', '{kind}', 'http://127.0.0.1:{}', 'fake-secret')",
                    fake.port
                ),
            )
            .await;
        }
        for (prefix, acct) in [("t_", "wx_t"), ("m_", "wx_ms")] {
            exec(
                &c,
                &format!(
                    "INSERT INTO events (openid, channel_id, event, event_date) \
                     SELECT '{prefix}' || x, '{acct}', 'subscribe', now() FROM generate_series(1, {fans}) t(x)"
                ),
            )
            .await;
        }
        let t = send(
            &c,
            "CALL wechat_template_send('wx_t', 'all', 'TPL_K', '{\"a\": {\"value\": \"b\"}}')",
        )
        .await;
        let m = send(
            &c,
            "CALL wechat_mass_send('wx_ms', 'all', 'text', '{\"content\": \"hi\"}')",
        )
        .await;
        drop(c);
        let mut server = server;
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1500))).await;
        server.kill9();
        (t, m)
    };
    for _ in 1..10 {
        let mut server = TestServer::start_with(&data, &args);
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2500))).await;
        server.kill9();
    }
    let server = TestServer::start_with(&data, &args);
    let c = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = simple_rows(
            &c,
            &format!(
                "SELECT count(*) FROM wechat_sends WHERE send_id IN ({template_id}, {mass_id}) AND status = 'done'"
            ),
        )
        .await;
        if st[0][0].as_deref() == Some("2") {
            break;
        }
        assert!(Instant::now() < deadline, "the sends did not finish");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // accepted deliveries per fan (0: answered, -1000: answer dropped)
    let mut delivered: std::collections::HashMap<String, usize> = Default::default();
    for call in fake.calls("/cgi-bin/message/template/send") {
        if call["errcode"] == 0 || call["errcode"] == -1000 {
            *delivered
                .entry(call["body"]["touser"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for call in fake.calls("/cgi-bin/message/mass/send") {
        if call["errcode"] == 0 || call["errcode"] == -1000 {
            for o in call["body"]["touser"].as_array().unwrap() {
                *delivered
                    .entry(o.as_str().unwrap().to_string())
                    .or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "fans sent twice: {:?}",
        &twice[..twice.len().min(5)]
    );
    for (id, event) in [
        (&template_id, "wechat_template_sent"),
        (&mass_id, "wechat_mass_sent"),
    ] {
        let rows = simple_rows(
            &c,
            &format!("SELECT openid, status FROM wechat_send_recipients WHERE send_id = {id}"),
        )
        .await;
        assert_eq!(rows.len(), fans);
        let mut unknown = 0;
        for r in &rows {
            let openid = r[0].as_deref().unwrap();
            match r[1].as_deref().unwrap() {
                "sent" => assert_eq!(
                    delivered.get(openid),
                    Some(&1),
                    "{openid} sent without a call"
                ),
                "unknown" => {
                    assert!(id == &template_id, "a mass recipient ended unknown");
                    unknown += 1;
                }
                "failed" | "skipped" => {}
                other => panic!("{openid} ended {other}"),
            }
        }
        let counts = simple_rows(
            &c,
            &format!("SELECT recipients, sent, sent + failed + skipped FROM wechat_sends WHERE send_id = {id}"),
        )
        .await;
        assert_eq!(counts[0][0].as_deref(), Some(fans.to_string().as_str()));
        assert_eq!(
            counts[0][2].as_deref(),
            Some((fans - unknown).to_string().as_str())
        );
        let timeline = simple_rows(
            &c,
            &format!(
                "SELECT count(*) FROM event_view WHERE event = '{event}' AND s_send_id = '{id}'"
            ),
        )
        .await;
        assert_eq!(timeline[0][0], counts[0][1], "{event}");
    }
}

/// The rate limit, measured on the fake's timestamps: 600 recipients a
/// minute (10 a second, at most one second's burst).
#[tokio::test]
async fn the_rate_limit_paces_calls() {
    let fake = Fake::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "wechat_recipients_per_minute = 600\n").unwrap();
    let server =
        TestServer::start_with(&dir.path().join("d"), &["--config", conf.to_str().unwrap()]);
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_r', 'wxr', 'service', 'http://127.0.0.1:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 'r_' || x, 'wx_r', 'subscribe', now() FROM generate_series(1, 40) t(x)",
    )
    .await;
    let id = send(
        &c,
        "CALL wechat_template_send('wx_r', 'all', 'TPL_R', '{\"a\": {\"value\": \"b\"}}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert!(r.iter().all(|x| x.1 == "sent"), "{r:?}");
    let ts: Vec<f64> = fake
        .calls("/cgi-bin/message/template/send")
        .iter()
        .map(|c| c["ts"].as_f64().unwrap())
        .collect();
    assert_eq!(ts.len(), 40);
    // 10 at once, then 30 more at 10 a second
    let span = ts.last().unwrap() - ts[0];
    assert!(span >= 2.7, "40 calls in {span:.2} s");
    for (i, t) in ts.iter().enumerate() {
        let in_a_second = ts[i..].iter().take_while(|u| **u < t + 1.0).count();
        assert!(in_a_second <= 21, "{in_a_second} calls within a second");
    }
}

/// `https://` API URLs: the fake serves TLS with a certificate of a test
/// CA; a server trusting that CA (`wechat_ca_file`) sends and makes QR
/// codes, one trusting only the system's CAs refuses the handshake and
/// sends nothing.
#[tokio::test]
async fn https_api_urls_are_checked_against_the_ca_bundle() {
    let fake = Fake::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.toml");
    let ca = cohortdb_tests::tests_dir().join("fakes/tls/ca.pem");
    std::fs::write(
        &conf,
        format!("wechat_ca_file = {:?}\n", ca.to_str().unwrap()),
    )
    .unwrap();
    let server =
        TestServer::start_with(&dir.path().join("d"), &["--config", conf.to_str().unwrap()]);
    let c = server.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_s', 'wxs', 'service', 'https://localhost:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (openid, channel_id, event, event_date) \
         SELECT 's_' || x, 'wx_s', 'subscribe', now() FROM generate_series(1, 3) t(x)",
    )
    .await;
    let id = send(
        &c,
        "CALL wechat_template_send('wx_s', 'all', 'TPL_S', '{\"a\": {\"value\": \"b\"}}')",
    )
    .await;
    let r = finished(&c, &id).await;
    assert!(r.iter().all(|x| x.1 == "sent"), "{r:?}");
    assert_eq!(fake.calls("/cgi-bin/message/template/send").len(), 3);
    let made = simple_rows(
        &c,
        "CALL wechat_create_qrcode('wx_s', 'tls_qr', 'permanent')",
    )
    .await;
    assert_eq!(made[0][1].as_deref(), Some("TICKET_tls_qr"));

    // the system's CAs do not know the test CA
    let other = TestServer::start();
    let c = other.client().await;
    exec(
        &c,
        &format!(
            "CALL wechat_add_account('wx_s', 'wxs', 'service', 'https://localhost:{}', 'fake-secret')",
            fake.port
        ),
    )
    .await;
    let e = expect_sqlstate(
        &c,
        "CALL wechat_create_qrcode('wx_s', 'tls_qr2', 'permanent')",
        "58000",
    )
    .await;
    assert!(e.message.contains("TLS"), "{e:?}");
    assert_eq!(fake.calls("/cgi-bin/qrcode/create").len(), 1);
}
