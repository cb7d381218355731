//! The HTTP collector (SPEC §12) with a real HTTP client (curl), against the
//! real binary: SDK batches plain and gzip, Segment batches, official-account
//! pushes with WeChat's signature, every refusal with nothing stored,
//! retries stored once (one after another and concurrently), the SDK
//! identity flow, metrics, and a batch acknowledged just before `kill -9`.

use std::io::Write;
use std::process::{Command, Stdio};

use cohortdb_tests::{exec, simple_rows, TestServer};
use serde_json::{json, Value};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request with curl: `headers` as `Name: value`, `body` sent as is.
fn curl(method: &str, url: &str, headers: &[&str], body: Option<&[u8]>) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-i",
        "--max-time",
        "30",
        "-X",
        method,
        url,
        "-H",
        "Expect:",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if body.is_some() {
        cmd.args(["--data-binary", "@-"]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl is installed (scripts/setup.sh)");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = body.map(|b| b.to_vec());
    let writer = std::thread::spawn(move || {
        if let Some(d) = data {
            let _ = stdin.write_all(&d);
        }
    });
    let out = child.wait_with_output().expect("curl ran");
    writer.join().expect("body writer");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "no HTTP answer: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    w.join().unwrap();
    out.stdout
}

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    simple_rows(client, sql).await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

fn sdk_event(event: &str, extra: Value) -> Value {
    let mut e = json!({"appid": "mp_shop", "appkey": "shop-secret-1", "event": event,
                       "time": 1_717_200_000_000i64});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

#[tokio::test]
async fn sdk_batches_plain_gzip_refusals_and_retries() {
    let server = TestServer::start();
    let client = server.client().await;
    exec(
        &client,
        "CALL collector_add_app('mp_shop', 'shop-secret-1', 'wx_mp')",
    )
    .await;
    let url = format!("{}/sdk/v1/track", server.http_url());
    let json_h = "Content-Type: application/json";

    // one event; a wrong-typed property is dropped and reported, the event kept
    let one = sdk_event(
        "appLaunch",
        json!({"qid": "q1", "message_id": "m-1",
               "properties": {"$os": "iOS", "s_page_path": "pages/index", "s_sku_price": "cheap"},
               "chan": {"chan_id": "c9", "chan_wxapp_scene": 1037}}),
    );
    let r = curl("POST", &url, &[json_h], Some(one.to_string().as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("err_code"), Some("0"));
    let body = r.json();
    assert_eq!(body["stored"], 1);
    let warnings = body["results"][0]["warnings"].to_string();
    assert!(warnings.contains("s_sku_price"), "{warnings}");
    let rows = simple_rows(
        &client,
        "SELECT event, channel_id, os, s_page_path, s_sku_price, chan_id, chan_wxapp_scene, event_date \
         FROM events",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some("app_launch".into()),
            Some("wx_mp".into()),
            Some("iOS".into()),
            Some("pages/index".into()),
            None,
            Some("c9".into()),
            Some("1037".into()),
            Some("2024-06-01 00:00:00+00".into()),
        ]]
    );

    // gzip, {"events": [...]}, the same anonymous user
    let batch = json!({"events": [
        sdk_event("browse_wxapp_page", json!({"qid": "q1", "message_id": "m-2"})),
        sdk_event("add_to_cart", json!({"qid": "q1", "message_id": "m-3"})),
    ]});
    let r = curl(
        "POST",
        &url,
        &[json_h, "Content-Encoding: gzip"],
        Some(&gzip(batch.to_string().as_bytes())),
    );
    assert_eq!(
        (r.status, r.header("err_code")),
        (200, Some("0")),
        "{}",
        r.body
    );
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 3);

    // a retry of the same batch is stored once
    let r = curl("POST", &url, &[json_h], Some(batch.to_string().as_bytes()));
    assert_eq!(r.json()["duplicates"], 2, "{}", r.body);
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 3);

    // an undefined event code: that event is rejected, the rest stored
    let mixed = json!([
        sdk_event("no_such_event", json!({"qid": "q1", "message_id": "m-4"})),
        sdk_event("search", json!({"qid": "q1", "message_id": "m-5"})),
    ]);
    let r = curl("POST", &url, &[json_h], Some(mixed.to_string().as_bytes()));
    assert_eq!(
        (r.status, r.header("err_code")),
        (200, Some("1004")),
        "{}",
        r.body
    );
    let b = r.json();
    assert_eq!(b["results"][0]["status"], "rejected");
    assert!(b["results"][0]["reason"]
        .to_string()
        .contains("no_such_event"));
    assert_eq!(b["results"][1]["status"], "stored");
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 4);

    // refusals: nothing stored
    let refusals: Vec<(Vec<&str>, Vec<u8>, u16, &str)> = vec![
        (vec![json_h], b"{\"appid\": ".to_vec(), 400, "1002"),
        (
            vec![json_h],
            sdk_event("search", json!({"appkey": "wrong-key", "qid": "q1"}))
                .to_string()
                .into_bytes(),
            401,
            "1001",
        ),
        // a gzip bomb: 64 MiB of zeros in about 64 KiB
        (
            vec![json_h, "Content-Encoding: gzip"],
            gzip(&vec![b' '; 64 << 20]),
            413,
            "1003",
        ),
        // over the wire limit
        (vec![json_h], vec![b' '; 2 << 20], 413, "1003"),
        (
            vec![json_h, "Content-Encoding: br"],
            b"{}".to_vec(),
            415,
            "1007",
        ),
    ];
    for (h, body, status, code) in refusals {
        let r = curl("POST", &url, &h, Some(&body));
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.header("err_code"), Some(code), "{}", r.body);
        assert!(r.json()["message"].is_string());
    }
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 4);

    // concurrent retries of one batch: stored once
    let burst = json!({"events": (0..20).map(|i| sdk_event("search",
        json!({"qid": "q-burst", "message_id": format!("burst-{i}")}))).collect::<Vec<_>>()});
    let body = burst.to_string();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || curl("POST", &url, &[json_h], Some(body.as_bytes())).status)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM events WHERE s_search_keyword IS NULL AND event = 'search'"
        )
        .await,
        21
    );

    // metrics moved
    let m = curl("GET", &format!("{}/metrics", server.http_url()), &[], None);
    assert_eq!(m.status, 200);
    assert!(
        m.body.lines().any(|l| l
            .starts_with("cohortdb_collector_messages_total{result=\"duplicate\"}")
            && !l.ends_with(" 0")),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("cohortdb_collector_dropped_properties_total"));
    assert!(m
        .body
        .contains("cohortdb_collector_request_duration_seconds_bucket"));
    let h = curl("GET", &format!("{}/healthz", server.http_url()), &[], None);
    assert_eq!(h.status, 200);
}

#[tokio::test]
async fn sdk_identity_flow_joins_anonymous_history() {
    let server = TestServer::start();
    let client = server.client().await;
    exec(
        &client,
        "CALL collector_add_app('mp_shop', 'shop-secret-1', 'wx_mp')",
    )
    .await;
    let url = format!("{}/sdk/v1/track", server.http_url());
    let post = |e: Value| {
        let r = curl(
            "POST",
            &url,
            &["Content-Type: application/json"],
            Some(e.to_string().as_bytes()),
        );
        assert_eq!(r.header("err_code"), Some("0"), "{}", r.body);
    };
    // anonymous history on one device
    post(json!([
        sdk_event("app_launch", json!({"qid": "anon-1"})),
        sdk_event("search", json!({"qid": "anon-1"}))
    ]));
    // the same person logged in on another device first
    post(sdk_event(
        "app_launch",
        json!({"userID": "user-7", "qid": "anon-2"}),
    ));
    assert_eq!(
        count(&client, "SELECT count(DISTINCT contact_id) FROM events").await,
        2
    );
    // logging in on the first device joins its anonymous history
    post(sdk_event(
        "custom_order",
        json!({"userID": "user-7", "qid": "anon-1"}),
    ));
    assert_eq!(
        count(&client, "SELECT count(DISTINCT contact_id) FROM events").await,
        1
    );
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 4);
    let c = simple_rows(
        &client,
        "SELECT contact_id FROM identities WHERE id_type = 'external_id' AND id_value = 'user-7'",
    )
    .await;
    let ids = simple_rows(
        &client,
        &format!(
            "SELECT id_type, id_value FROM identities WHERE contact_id = {} ORDER BY id_type, id_value",
            c[0][0].as_deref().unwrap()
        ),
    )
    .await;
    assert_eq!(
        ids,
        vec![
            vec![Some("anonymous_id".into()), Some("anon-1".into())],
            vec![Some("anonymous_id".into()), Some("anon-2".into())],
            vec![Some("external_id".into()), Some("user-7".into())],
        ]
    );
}

#[tokio::test]
async fn segment_batches() {
    let server = TestServer::start();
    let client = server.client().await;
    exec(
        &client,
        "CALL collector_add_app('backend', 'backend-key-1', 'shop')",
    )
    .await;
    // the key is never readable
    let apps = simple_rows(&client, "SELECT * FROM collector_apps").await;
    assert_eq!(apps[0][0].as_deref(), Some("backend"));
    assert!(!format!("{apps:?}").contains("backend-key-1"));
    let url = format!("{}/v1/batch", server.http_url());
    let batch = json!({"batch": [
        {"type": "identify", "userId": "crm-1", "messageId": "b-1",
         "traits": {"name": "李雷", "email": "li@example.com"}},
        {"type": "track", "event": "custom_order", "userId": "crm-1", "messageId": "b-2",
         "timestamp": "2024-05-01T10:00:00Z", "properties": {"s_order_amount": 99.5, "s_order_id": "o-1"}},
        {"type": "alias", "userId": "crm-1"},
    ]})
    .to_string();
    // no key, wrong key
    let r = curl(
        "POST",
        &url,
        &["Content-Type: application/json"],
        Some(batch.as_bytes()),
    );
    assert_eq!(r.status, 401);
    let r = curl(
        "POST",
        &url,
        &["X-Write-Key: nope-nope"],
        Some(batch.as_bytes()),
    );
    assert_eq!(r.status, 401);
    // unparsable: 400, nothing stored
    let r = curl(
        "POST",
        &url,
        &["X-Write-Key: backend-key-1"],
        Some(b"{\"batch\": [}"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(count(&client, "SELECT count(*) FROM contacts").await, 0);
    // Basic auth with the key as user
    let r = curl("POST", &url, &[], Some(batch.as_bytes()));
    assert_eq!(r.status, 401);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-u",
            "backend-key-1:",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &batch,
            &url,
        ])
        .output()
        .unwrap();
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["ok"], 2, "{b}");
    assert_eq!(b["results"][2]["status"], "rejected");
    let rows = simple_rows(
        &client,
        "SELECT c.name, c.email, e.s_order_amount, e.event_date FROM events e JOIN contacts c ON c.id = e.contact_id",
    )
    .await;
    assert_eq!(
        rows,
        vec![vec![
            Some("李雷".into()),
            Some("li@example.com".into()),
            Some("99.5".into()),
            Some("2024-05-01 10:00:00+00".into())
        ]]
    );
    // a retry with X-Write-Key: duplicates
    let r = curl(
        "POST",
        &url,
        &["X-Write-Key: backend-key-1"],
        Some(batch.as_bytes()),
    );
    let b = r.json();
    assert_eq!(
        (b["ok"].clone(), b["duplicates"].clone()),
        (json!(0), json!(2)),
        "{b}"
    );
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 1);
}

fn signed(token: &str, timestamp: &str, nonce: &str) -> String {
    let mut parts = [token, timestamp, nonce];
    parts.sort_unstable();
    let out = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(parts.concat().as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..40].to_string()
}

#[tokio::test]
async fn wechat_pushes() {
    let server = TestServer::start();
    let client = server.client().await;
    exec(
        &client,
        "CALL collector_set_wechat_token('wx_oa_main', 'tok3n42')",
    )
    .await;
    let base = format!("{}/wechat/wx_oa_main", server.http_url());
    let sig = signed("tok3n42", "1717200000", "n0nce");
    let q = format!("?signature={sig}&timestamp=1717200000&nonce=n0nce");
    // URL check
    let r = curl("GET", &format!("{base}{q}&echostr=hello123"), &[], None);
    assert_eq!((r.status, r.body.as_str()), (200, "hello123"));
    let r = curl(
        "GET",
        &format!("{base}?signature=00&timestamp=1&nonce=2&echostr=x"),
        &[],
        None,
    );
    assert_eq!(r.status, 401);

    let subscribe = r#"<xml><ToUserName><![CDATA[gh_main]]></ToUserName>
<FromUserName><![CDATA[o_fan_1]]></FromUserName><CreateTime>1717200000</CreateTime>
<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event>
<EventKey><![CDATA[qrscene_spring]]></EventKey><Ticket><![CDATA[TICKET]]></Ticket></xml>"#;
    // bad or missing signature: 401, nothing stored
    let r = curl(
        "POST",
        &format!("{base}?timestamp=1&nonce=2"),
        &[],
        Some(subscribe.as_bytes()),
    );
    assert_eq!(r.status, 401);
    let wrong = signed("other", "1717200000", "n0nce");
    let r = curl(
        "POST",
        &format!("{base}?signature={wrong}&timestamp=1717200000&nonce=n0nce"),
        &[],
        Some(subscribe.as_bytes()),
    );
    assert_eq!(r.status, 401);
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 0);
    // malformed XML: 400, nothing stored
    let r = curl(
        "POST",
        &format!("{base}{q}"),
        &[],
        Some(b"<xml><FromUserName>o"),
    );
    assert_eq!(r.status, 400);

    // subscribe via QR, twice (WeChat's retry), then unsubscribe
    for _ in 0..2 {
        let r = curl(
            "POST",
            &format!("{base}{q}"),
            &["Content-Type: text/xml"],
            Some(subscribe.as_bytes()),
        );
        assert_eq!((r.status, r.body.as_str()), (200, "success"));
    }
    let unsubscribe = r#"<xml><ToUserName>gh_main</ToUserName><FromUserName>o_fan_1</FromUserName>
<CreateTime>1717203600</CreateTime><MsgType>event</MsgType><Event>unsubscribe</Event></xml>"#;
    let r = curl(
        "POST",
        &format!("{base}{q}"),
        &[],
        Some(unsubscribe.as_bytes()),
    );
    assert_eq!(r.status, 200);
    let text = r#"<xml><FromUserName>o_fan_1</FromUserName><CreateTime>1717200100</CreateTime>
<MsgType>text</MsgType><Content><![CDATA[你好]]></Content><MsgId>1234567</MsgId></xml>"#;
    let r = curl("POST", &format!("{base}{q}"), &[], Some(text.as_bytes()));
    assert_eq!(r.status, 200);
    let rows = simple_rows(
        &client,
        "SELECT event, channel_id, s_qrcode_id, s_msg_type, s_msg_content FROM events ORDER BY event_date",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec![
                Some("subscribe".into()),
                Some("wx_oa_main".into()),
                Some("spring".into()),
                None,
                None
            ],
            vec![
                Some("message".into()),
                Some("wx_oa_main".into()),
                None,
                Some("text".into()),
                Some("你好".into())
            ],
            vec![
                Some("unsubscribe".into()),
                Some("wx_oa_main".into()),
                None,
                None,
                None
            ],
        ]
    );
    let ids = simple_rows(
        &client,
        "SELECT id_type, channel_id, id_value, (SELECT count(DISTINCT contact_id) FROM events) FROM identities",
    )
    .await;
    assert_eq!(
        ids,
        vec![vec![
            Some("wechat.openid".into()),
            Some("wx_oa_main".into()),
            Some("o_fan_1".into()),
            Some("1".into())
        ]]
    );
}

#[tokio::test]
async fn acknowledged_batch_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_with(dir.path(), &[]);
    {
        let client = server.client().await;
        exec(
            &client,
            "CALL collector_add_app('mp_shop', 'shop-secret-1', 'wx_mp')",
        )
        .await;
    }
    let events: Vec<Value> = (0..200)
        .map(|i| {
            sdk_event(
                "search",
                json!({"qid": format!("k-{}", i % 7), "message_id": format!("k9-{i}")}),
            )
        })
        .collect();
    let r = curl(
        "POST",
        &format!("{}/sdk/v1/track", server.http_url()),
        &["Content-Type: application/json"],
        Some(json!({"events": events}).to_string().as_bytes()),
    );
    assert_eq!(r.header("err_code"), Some("0"), "{}", r.body);
    server.kill9();
    let server = TestServer::start_with(dir.path(), &[]);
    let client = server.client().await;
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 200);
    // and the message ids survived too: a retry after the restart stores nothing
    let r = curl(
        "POST",
        &format!("{}/sdk/v1/track", server.http_url()),
        &["Content-Type: application/json"],
        Some(json!({"events": events}).to_string().as_bytes()),
    );
    assert_eq!(r.json()["duplicates"], 200, "{}", r.body);
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, 200);
}
