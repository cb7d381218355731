//! Customer journeys (SPEC §7) against the real binary: a published
//! journey reacts to committed events within a second, waits, branches on
//! the contact's events, acts (group, field), keeps re-entry rules and
//! step statistics, survives kill -9 while runs wait, and refuses bad
//! definitions with nothing stored.

use std::time::{Duration, Instant};

use cohortdb_tests::{exec, expect_sqlstate, simple_rows, TestServer};
use tokio_postgres::Client;

const WELCOME: &str = r#"{ "name": "Welcome",
  "trigger": {"event": "app_launch", "where": "s_page_path = 'pages/index'"},
  "reentry": "once",
  "steps": [
    {"id": "wait1",  "type": "wait", "duration": "2 seconds"},
    {"id": "bought", "type": "branch", "did_event": "custom_order", "within_days": 3,
                     "then": "done", "else": "tag"},
    {"id": "tag",    "type": "add_to_group", "group": "group_nudged"},
    {"id": "mark",   "type": "set_field", "field": "city", "value": "nudged"},
    {"id": "done",   "type": "end"} ] }"#;

async fn rows(c: &Client, sql: &str) -> Vec<Vec<String>> {
    simple_rows(c, sql)
        .await
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.unwrap_or_default()).collect())
        .collect()
}

async fn wait_for(c: &Client, sql: &str, want: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = rows(c, sql).await;
        if got.first().and_then(|r| r.first()).map(String::as_str) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: wanted {want}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn setup(c: &Client) {
    exec(c, "CREATE STATIC GROUP group_nudged").await;
    exec(
        c,
        "INSERT INTO contacts (id, name) VALUES (1, 'A'), (2, 'B'), (3, 'C')",
    )
    .await;
    exec(
        c,
        &format!(
            "CALL create_journey('j_welcome', '{}')",
            WELCOME.replace('\'', "''")
        ),
    )
    .await;
    exec(c, "CALL publish_journey('j_welcome')").await;
}

#[tokio::test]
async fn journey_reacts_waits_branches_and_acts() {
    let server = TestServer::start();
    let c = server.client().await;
    setup(&c).await;
    let t0 = Instant::now();
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES \
         (1, 'app_launch', now(), 'pages/index'), \
         (2, 'custom_order', now(), NULL), (2, 'app_launch', now(), 'pages/index'), \
         (3, 'app_launch', now(), 'pages/other')",
    )
    .await;
    wait_for(&c, "SELECT count(*) FROM journey_runs", "2", 2).await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "runs started within a second or so"
    );
    assert_eq!(
        rows(
            &c,
            "SELECT contact_id, status, step FROM journey_runs ORDER BY contact_id"
        )
        .await,
        vec![vec!["1", "waiting", "wait1"], vec!["2", "waiting", "wait1"]]
    );
    wait_for(
        &c,
        "SELECT count(*) FROM journey_runs WHERE status = 'completed'",
        "2",
        10,
    )
    .await;
    assert_eq!(
        rows(
            &c,
            "SELECT id, city, group_nudged FROM contact_view ORDER BY id"
        )
        .await,
        vec![
            vec!["1", "nudged", "t"],
            vec!["2", "", "f"],
            vec!["3", "", "f"]
        ]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT step, entered, completed, failed FROM journey_step_stats WHERE journey_id = 'j_welcome' ORDER BY step"
        )
        .await,
        vec![
            vec!["bought", "2", "2", "0"],
            vec!["done", "2", "2", "0"],
            vec!["mark", "1", "1", "0"],
            vec!["tag", "1", "1", "0"],
            vec!["wait1", "2", "2", "0"],
        ]
    );
    // reentry once: a second launch starts nothing
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES (1, 'app_launch', now(), 'pages/index')",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journey_runs").await,
        vec![vec!["2"]]
    );

    // lifecycle rules
    expect_sqlstate(&c, "CALL publish_journey('j_welcome')", "55000").await;
    expect_sqlstate(
        &c,
        &format!(
            "CALL create_journey('j_welcome', '{}')",
            WELCOME.replace('\'', "''")
        ),
        "55000",
    )
    .await;
    expect_sqlstate(&c, "CALL delete_journey('j_welcome')", "55000").await;
    exec(&c, "CALL stop_journey('j_welcome')").await;
    assert_eq!(
        rows(&c, "SELECT status FROM journeys").await,
        vec![vec!["stopped"]]
    );
    exec(&c, "CALL delete_journey('j_welcome')").await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journeys").await,
        vec![vec!["0"]]
    );
}

#[tokio::test]
async fn bad_definitions_are_refused_naming_the_step() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "CREATE STATIC GROUP group_nudged").await;
    let cases = [
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"a","type":"teleport"}]}"#,
            "22023",
            "\"a\"",
        ),
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"a","type":"add_to_group","group":"group_nope"}]}"#,
            "42704",
            "\"a\"",
        ),
        (
            r#"{"trigger":{"event":"no_such_event"},"steps":[{"id":"a","type":"end"}]}"#,
            "42704",
            "no_such_event",
        ),
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"a","type":"branch","in_group":"group_nudged","then":"b","else":"zz"},{"id":"b","type":"end"}]}"#,
            "42704",
            "zz",
        ),
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"a","type":"branch","in_group":"group_nudged","then":"b","else":"b"},{"id":"b","type":"set_field","field":"city","value":"x","next":"a"}]}"#,
            "22023",
            "cycle",
        ),
        (
            r#"{"trigger":{"event":"app_launch","where":"no_such_column = 1"},"steps":[{"id":"a","type":"end"}]}"#,
            "22023",
            "predicate",
        ),
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"w","type":"wait","duration":"soon"}]}"#,
            "22023",
            "\"w\"",
        ),
        (
            r#"{"trigger":{"event":"app_launch"},"steps":[{"id":"m","type":"wechat_template","account":"wx_nope","template_id":"T"}]}"#,
            "42704",
            "wx_nope",
        ),
        (r#"not json"#, "22023", "JSON"),
    ];
    for (def, code, needle) in cases {
        let e = expect_sqlstate(&c, &format!("CALL create_journey('j_bad', '{def}')"), code).await;
        assert!(e.message.contains(needle), "{def}: {}", e.message);
    }
    expect_sqlstate(&c, "CALL create_journey('welcome', '{}')", "42602").await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journeys").await,
        vec![vec!["0"]]
    );
    // a cycle through a wait is fine
    exec(
        &c,
        r#"CALL create_journey('j_loop', '{"trigger":{"event":"app_launch"},"steps":[{"id":"w","type":"wait","duration":"1 day"},{"id":"b","type":"branch","in_group":"group_nudged","then":"w","else":"e"},{"id":"e","type":"end"}]}')"#,
    )
    .await;
}

#[tokio::test]
async fn waiting_runs_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    {
        let mut server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        setup(&c).await;
        exec(
            &c,
            "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES (1, 'app_launch', now(), 'pages/index')",
        )
        .await;
        wait_for(&c, "SELECT status FROM journey_runs", "waiting", 3).await;
        server.kill9();
    }
    let server = TestServer::start_with(&data, &[]);
    let c = server.client().await;
    wait_for(&c, "SELECT status FROM journey_runs", "completed", 10).await;
    assert_eq!(
        rows(
            &c,
            "SELECT city, group_nudged FROM contact_view WHERE id = 1"
        )
        .await,
        vec![vec!["nudged", "t"]]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journey_runs").await,
        vec![vec!["1"]]
    );
}

#[tokio::test]
async fn collector_events_trigger_journeys() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "CALL collector_add_app('mp_shop', 'shop-secret-1', 'wx_mp')",
    )
    .await;
    setup(&c).await;
    let body = r#"{"appid":"mp_shop","appkey":"shop-secret-1","event":"appLaunch","qid":"q-77",
                   "message_id":"jm-1","properties":{"s_page_path":"pages/index"}}"#;
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ])
        .arg(format!("{}/sdk/v1/track", server.http_url()))
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"stored\":1"));
    wait_for(&c, "SELECT count(*) FROM journey_runs", "1", 2).await;
    let who = rows(
        &c,
        "SELECT r.status FROM journey_runs r JOIN identities i ON i.contact_id = r.contact_id \
         WHERE i.id_type = 'anonymous_id' AND i.id_value = 'q-77'",
    )
    .await;
    assert_eq!(who, vec![vec!["waiting"]]);
}

#[tokio::test]
async fn events_committed_while_the_engine_was_off_are_handled_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let off = dir.path().join("off.toml");
    std::fs::write(&off, "journeys_enabled = false\n").unwrap();
    {
        let c = TestServer::start_with(&data, &[]);
        let client = c.client().await;
        setup(&client).await;
        // the engine has seen the journey published
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    {
        let s = TestServer::start_with(&data, &["--config", off.to_str().unwrap()]);
        let c = s.client().await;
        exec(
            &c,
            "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES (1, 'app_launch', now(), 'pages/index')",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            rows(&c, "SELECT count(*) FROM journey_runs").await,
            vec![vec!["0"]]
        );
    }
    let s = TestServer::start_with(&data, &[]);
    let c = s.client().await;
    wait_for(&c, "SELECT count(*) FROM journey_runs", "1", 5).await;
    wait_for(&c, "SELECT status FROM journey_runs", "completed", 10).await;
}

#[tokio::test]
async fn group_trigger_starts_a_run_per_member_once() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "CREATE STATIC GROUP group_vips").await;
    exec(
        &c,
        "INSERT INTO contacts (id, name) VALUES (1, 'A'), (2, 'B'), (3, 'C')",
    )
    .await;
    exec(&c, "ALTER GROUP group_vips ADD CONTACTS VALUES (1), (2)").await;
    exec(
        &c,
        r#"CALL create_journey('j_vip', '{"name":"VIP","trigger":{"group":"group_vips","at":"2000-01-01 00:00:00+00"},"steps":[{"id":"m","type":"set_field","field":"city","value":"vip"},{"id":"e","type":"end"}]}')"#,
    )
    .await;
    exec(&c, "CALL publish_journey('j_vip')").await;
    wait_for(
        &c,
        "SELECT count(*) FROM journey_runs WHERE status = 'completed'",
        "2",
        5,
    )
    .await;
    assert_eq!(
        rows(&c, "SELECT id, city FROM contacts ORDER BY id").await,
        vec![vec!["1", "vip"], vec!["2", "vip"], vec!["3", ""]]
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journey_runs").await,
        vec![vec!["2"]]
    );
}

#[tokio::test]
async fn until_event_both_ways_and_a_failing_action() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, name) VALUES (1, 'A'), (2, 'B'), (3, 'C')",
    )
    .await;
    exec(
        &c,
        r#"CALL create_journey('j_cart', '{"trigger":{"event":"add_to_cart"},"steps":[
            {"id":"w","type":"wait","until_event":"custom_order","timeout":"2 seconds","next":"yes","timeout_next":"no"},
            {"id":"yes","type":"set_field","field":"city","value":"buyer","next":"done"},
            {"id":"no","type":"set_field","field":"city","value":"lost","next":"done"},
            {"id":"done","type":"end"}]}')"#,
    )
    .await;
    exec(
        &c,
        r#"CALL create_journey('j_bad_value', '{"trigger":{"event":"search"},"steps":[
            {"id":"g","type":"set_field","field":"gender","value":"alien"}]}')"#,
    )
    .await;
    exec(&c, "CALL publish_journey('j_cart')").await;
    exec(&c, "CALL publish_journey('j_bad_value')").await;
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date) VALUES (1, 'add_to_cart', now()), (2, 'add_to_cart', now()), (3, 'search', now())",
    )
    .await;
    wait_for(
        &c,
        "SELECT count(*) FROM journey_runs WHERE journey_id = 'j_cart'",
        "2",
        3,
    )
    .await;
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date) VALUES (1, 'custom_order', now())",
    )
    .await;
    wait_for(&c, "SELECT city FROM contacts WHERE id = 1", "buyer", 3).await;
    wait_for(&c, "SELECT city FROM contacts WHERE id = 2", "lost", 6).await;
    // the failing action marks the run failed, counted, and the engine goes on
    wait_for(
        &c,
        "SELECT status FROM journey_runs WHERE journey_id = 'j_bad_value'",
        "failed",
        3,
    )
    .await;
    assert_eq!(
        rows(
            &c,
            "SELECT failed FROM journey_step_stats WHERE journey_id = 'j_bad_value' AND step = 'g'"
        )
        .await,
        vec![vec!["1"]]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM journey_runs WHERE journey_id = 'j_cart' AND status = 'completed'").await,
        vec![vec!["2"]]
    );
}

/// kill -9 at random moments, ten times, while events flow in and runs
/// wait: afterwards every contact with a committed trigger event has
/// exactly one run (re-entry once), every run completed (its timer fired),
/// each group add and field change happened for each run, and the step
/// statistics equal the runs.
#[tokio::test]
async fn kill_9_ten_times_with_events_flowing() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let contacts = 3000;
    {
        let server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        exec(&c, "CREATE STATIC GROUP group_flow").await;
        exec(
            &c,
            &format!(
                "INSERT INTO contacts (id, name) SELECT x, 'c' || x FROM generate_series(1, {contacts}) t(x)"
            ),
        )
        .await;
        exec(
            &c,
            r#"CALL create_journey('j_flow', '{"trigger": {"event": "app_launch"}, "reentry": "once", "steps": [
                {"id": "join", "type": "add_to_group", "group": "group_flow"},
                {"id": "pause", "type": "wait", "duration": "1 seconds"},
                {"id": "mark", "type": "set_field", "field": "city", "value": "done"},
                {"id": "leave", "type": "remove_from_group", "group": "group_flow"},
                {"id": "rejoin", "type": "add_to_group", "group": "group_flow"},
                {"id": "end", "type": "end"}]}')"#,
        )
        .await;
        exec(&c, "CALL publish_journey('j_flow')").await;
    }
    let mut next = 1u64;
    for _ in 0..10 {
        let mut server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        let until = Instant::now() + Duration::from_millis(rng.random_range(300..1500));
        // one writer: statements commit in sequence order
        while Instant::now() < until && next + 5 <= contacts {
            let values: Vec<String> = (next..next + 5)
                .map(|i| format!("({i}, 'app_launch', now())"))
                .collect();
            let sql = format!(
                "INSERT INTO events (contact_id, event, event_date) VALUES {}",
                values.join(", ")
            );
            if c.simple_query(&sql).await.is_err() {
                break;
            }
            next += 5;
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..60))).await;
        }
        // the kill lands while events may be in flight
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            c.simple_query(&format!(
                "INSERT INTO events (contact_id, event, event_date) VALUES ({next}, 'app_launch', now())"
            )),
        )
        .await;
        next += 1;
        server.kill9();
    }
    let server = TestServer::start_with(&data, &[]);
    let c = server.client().await;
    let triggered = rows(
        &c,
        "SELECT count(DISTINCT contact_id) FROM event_view WHERE event = 'app_launch'",
    )
    .await[0][0]
        .clone();
    assert!(triggered.parse::<u64>().unwrap() > 20, "{triggered}");
    wait_for(
        &c,
        "SELECT count(*) FROM journey_runs WHERE status = 'completed'",
        &triggered,
        60,
    )
    .await;
    assert_eq!(
        rows(
            &c,
            "SELECT count(*), count(DISTINCT contact_id) FROM journey_runs"
        )
        .await,
        vec![vec![triggered.clone(), triggered.clone()]]
    );
    // every triggered contact has its run
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM (SELECT DISTINCT contact_id FROM event_view WHERE event = 'app_launch') e \
             LEFT JOIN journey_runs r ON r.contact_id = e.contact_id WHERE r.run_id IS NULL"
        )
        .await,
        vec![vec!["0"]]
    );
    assert_eq!(
        rows(
            &c,
            "SELECT count(*) FROM contact_view WHERE group_flow AND city = 'done'"
        )
        .await,
        vec![vec![triggered.clone()]]
    );
    assert_eq!(
        rows(&c, "SELECT count(*) FROM contact_view WHERE group_flow").await,
        vec![vec![triggered.clone()]]
    );
    let stats = rows(
        &c,
        "SELECT step, entered, completed, failed FROM journey_step_stats WHERE journey_id = 'j_flow' ORDER BY step",
    )
    .await;
    assert_eq!(stats.len(), 6, "{stats:?}");
    for s in &stats {
        assert_eq!(
            s[1..],
            [triggered.clone(), triggered.clone(), "0".to_string()],
            "{s:?}"
        );
    }
}

/// Several journeys triggered by one event code: each event starts the
/// ones whose predicate it satisfies (evaluated together), and those
/// without a predicate.
#[tokio::test]
async fn journeys_sharing_a_trigger_event_start_by_their_predicates() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, name) VALUES (1, 'A'), (2, 'B'), (3, 'C')",
    )
    .await;
    for (id, filter) in [
        ("j_pa", r#", "where": "s_page_path = ''pages/a''""#),
        (
            "j_pb",
            r#", "where": "s_page_path = ''pages/b'' AND contact_id > 1""#,
        ),
        ("j_any", ""),
    ] {
        exec(
            &c,
            &format!(
                r#"CALL create_journey('{id}', '{{"trigger": {{"event": "app_launch"{filter}}}, "steps": [{{"id": "w", "type": "wait", "duration": "1 hours"}}]}}')"#
            ),
        )
        .await;
        exec(&c, &format!("CALL publish_journey('{id}')")).await;
    }
    exec(
        &c,
        "INSERT INTO events (contact_id, event, event_date, s_page_path) VALUES \
         (1, 'app_launch', now(), 'pages/a'), (2, 'app_launch', now(), 'pages/b'), \
         (3, 'app_launch', now(), 'pages/c')",
    )
    .await;
    wait_for(&c, "SELECT count(*) FROM journey_runs", "5", 10).await;
    assert_eq!(
        rows(
            &c,
            "SELECT contact_id, journey_id FROM journey_runs ORDER BY contact_id, journey_id"
        )
        .await,
        vec![
            vec!["1", "j_any"],
            vec!["1", "j_pa"],
            vec!["2", "j_any"],
            vec!["2", "j_pb"],
            vec!["3", "j_any"],
        ]
    );
}
