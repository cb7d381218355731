//! Identity resolution over the wire: `CALL identify` (create, update,
//! WeChatInfo and anonymous-id merges), identity-keyed COPY/INSERT of events
//! and contacts, `merge_contacts` (then counting one contact), concurrent
//! identify calls, dedupe rules with placeholders, `delete_contact_data`,
//! and a merge interrupted by `kill -9`.

use std::time::Duration;

use bytes::Bytes;
use cohortdb_tests::{exec, expect_sqlstate, simple_rows, SqlError, TestServer};
use futures::SinkExt;
use tokio_postgres::Client;

async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, SqlError> {
    let sink = client.copy_in(sql).await.map_err(|e| SqlError::from(&e))?;
    futures::pin_mut!(sink);
    for chunk in data.as_bytes().chunks(64 << 10) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| SqlError::from(&e))?;
    }
    sink.as_mut().finish().await.map_err(|e| SqlError::from(&e))
}

async fn one(client: &Client, sql: &str) -> String {
    let rows = simple_rows(client, sql).await;
    assert_eq!(rows.len(), 1, "one row expected from {sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| "NULL".into())
}

async fn identify(client: &Client, channel: &str, ext: &str, props: &str) -> (i64, bool) {
    let rows = simple_rows(
        client,
        &format!("CALL identify('{channel}', '{ext}', '{props}')"),
    )
    .await;
    assert_eq!(rows.len(), 1, "identify returns one row: {rows:?}");
    let id = rows[0][0]
        .as_deref()
        .expect("contact_id")
        .parse()
        .expect("id");
    let created = rows[0][1].as_deref() == Some("t");
    (id, created)
}

#[tokio::test]
async fn identify_create_update_and_merges() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "ALTER TABLE contacts ADD COLUMN p_level BIGINT").await;
    exec(&c, "ALTER TABLE contacts ADD COLUMN p_vip_since DATE").await;

    // create: every field family, camelCase
    let (id, created) = identify(
        &c,
        "udc_1",
        "u1",
        r#"{"nickname":"小张","mobilePhone":"189-0888-2802","homePhone":"021-89006745","idCard":"320987","postalCode":"20000","birthday":"1990-01-01","gender":"male","utm":{"source":"baidu","medium":"SEM","campaign":"推广","content":"CDP","term":"数据中台"},"props":{"level":3,"vip_since":"2024-05-01"},"channel":{"channelId":"udc_1"}}"#,
    )
    .await;
    assert!(created);
    let rows = simple_rows(&c, &format!("SELECT nickname, mobile_phone, home_phone, id_card, postal_code, birthday, gender, utm_source, utm_term, p_level, p_vip_since, is_identified, created_at IS NOT NULL FROM contacts WHERE id = {id}")).await;
    assert_eq!(
        rows[0],
        [
            "小张",
            "18908882802",
            "02189006745",
            "320987",
            "20000",
            "1990-01-01",
            "male",
            "baidu",
            "数据中台",
            "3",
            "2024-05-01",
            "t",
            "t"
        ]
        .map(|s| Some(s.to_string()))
        .to_vec()
    );
    let rows = simple_rows(
        &c,
        "SELECT contact_id, id_type, channel_id, id_value FROM identities",
    )
    .await;
    assert_eq!(
        rows,
        vec![[
            id.to_string(),
            "external_id".into(),
            "udc_1".into(),
            "u1".into()
        ]
        .map(Some)
        .to_vec()]
    );

    // update: same account, snake_case; utm is creation UTM only (already identified)
    let (id2, created) = identify(
        &c,
        "udc_1",
        "u1",
        r#"{"email":"Zhang@Example.com","postal_code":"20001","utm":{"source":"google"}}"#,
    )
    .await;
    assert_eq!((id2, created), (id, false));
    assert_eq!(
        one(&c, &format!("SELECT email || '/' || postal_code || '/' || utm_source FROM contacts WHERE id = {id}")).await,
        "Zhang@Example.com/20001/baidu"
    );

    // utm applies when an anonymous contact becomes identified
    let (id3, created) = identify(&c, "udc_1", "u_nameless", r#"{"utm":{"source":"wx"}}"#).await;
    assert!(created);
    assert_eq!(
        one(
            &c,
            &format!("SELECT coalesce(utm_source, 'none') FROM contacts WHERE id = {id3}")
        )
        .await,
        "none"
    );
    identify(
        &c,
        "udc_1",
        "u_nameless",
        r#"{"name":"李四","utm":{"source":"wx"}}"#,
    )
    .await;
    assert_eq!(
        one(
            &c,
            &format!("SELECT utm_source FROM contacts WHERE id = {id3}")
        )
        .await,
        "wx"
    );

    // type-checked custom fields, validated system fields, unknown keys
    expect_sqlstate(
        &c,
        r#"CALL identify('udc_1', 'u1', '{"props":{"level":"high"}}')"#,
        "42804",
    )
    .await;
    expect_sqlstate(
        &c,
        r#"CALL identify('udc_1', 'u1', '{"props":{"nosuch":1}}')"#,
        "42703",
    )
    .await;
    expect_sqlstate(
        &c,
        r#"CALL identify('udc_1', 'u1', '{"gender":"robot"}')"#,
        "22023",
    )
    .await;
    expect_sqlstate(
        &c,
        r#"CALL identify('udc_1', 'u1', '{"emial":"x@y.z"}')"#,
        "42703",
    )
    .await;
    expect_sqlstate(&c, r#"CALL identify('udc_1', 'u1', 'not json')"#, "22P02").await;

    // WeChatInfo: the fan (known by openid from official-account events) is the contact
    copy_in(
        &c,
        "COPY events (openid, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        "o_fan,wx_oa,subscribe,2025-06-01 10:00:00+00\no_fan,wx_oa,click_menu,2025-06-01 10:01:00+00\n",
    )
    .await
    .expect("copy fan events");
    let fan: i64 = one(
        &c,
        "SELECT contact_id FROM identities WHERE id_type = 'wechat.openid' AND id_value = 'o_fan'",
    )
    .await
    .parse()
    .unwrap();
    let (w, created) = identify(
        &c,
        "udc_1",
        "u_wx",
        r#"{"name":"王五","weChatInfo":{"appId":"wx_oa","openId":"o_fan","unionId":"un_1"}}"#,
    )
    .await;
    assert_eq!((w, created), (fan, false));
    let rows = simple_rows(&c, &format!("SELECT id_type, channel_id, id_value FROM identities WHERE contact_id = {fan} ORDER BY id_type")).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    // an existing channel account merges into the fan's contact
    let (u, _) = identify(&c, "udc_2", "u_other", r#"{"email":"other@example.com"}"#).await;
    exec(&c, &format!("INSERT INTO events (contact_id, event, event_date, channel_id) VALUES ({u}, 'app_launch', '2025-06-02 08:00:00+00', 'udc_2')")).await;
    let (w2, created) = identify(
        &c,
        "udc_2",
        "u_other",
        r#"{"wechat_info":{"union_id":"un_1"}}"#,
    )
    .await;
    assert_eq!((w2, created), (fan, false));
    assert_eq!(
        one(&c, &format!("SELECT count(*) FROM contacts WHERE id = {u}")).await,
        "0"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {fan}")
        )
        .await,
        "3"
    );
    assert_eq!(
        one(&c, &format!("SELECT email FROM contacts WHERE id = {fan}")).await,
        "other@example.com"
    );

    // anonymousId: the anonymous contact and its events merge into the identified one
    copy_in(
        &c,
        "COPY events (anonymous_id, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        "anon_9,udc_1,app_launch,2025-06-03 10:00:00+00\nanon_9,udc_1,browse_wxapp_page,2025-06-03 10:00:05+00\nanon_9,udc_1,add_to_cart,2025-06-03 10:01:00+00\n",
    )
    .await
    .expect("copy anonymous events");
    let anon: i64 = one(
        &c,
        "SELECT contact_id FROM identities WHERE id_type = 'anonymous_id'",
    )
    .await
    .parse()
    .unwrap();
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {anon}")
        )
        .await,
        "3"
    );
    let (k, created) = identify(
        &c,
        "udc_1",
        "u_k",
        r#"{"name":"赵六","anonymousId":"anon_9"}"#,
    )
    .await;
    assert!(created);
    assert_ne!(k, anon);
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {k}")
        )
        .await,
        "3"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {anon}")
        )
        .await,
        "0"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM contacts WHERE id = {anon}")
        )
        .await,
        "0"
    );
    assert_eq!(
        one(
            &c,
            "SELECT contact_id FROM identities WHERE id_type = 'anonymous_id'"
        )
        .await,
        k.to_string()
    );
    // later events of that anonymous id land on the identified contact
    copy_in(
        &c,
        "COPY events (anonymous_id, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        "anon_9,udc_1,app_show,2025-06-04 10:00:00+00\n",
    )
    .await
    .expect("copy");
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {k}")
        )
        .await,
        "4"
    );
}

#[tokio::test]
async fn identity_keyed_ingest() {
    let server = TestServer::start();
    let c = server.client().await;
    let (known, _) = identify(&c, "app", "alice", r#"{"name":"Alice"}"#).await;
    // known and unknown identities, repeated in one statement, csv and text
    let n = copy_in(
        &c,
        "COPY events (external_id, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        "alice,app,app_launch,2025-06-01 10:00:00+00\nbob,app,app_launch,2025-06-01 10:00:00+00\nbob,app,app_show,2025-06-01 10:00:01+00\ncarol,app,app_launch,2025-06-01 11:00:00+00\nalice,app2,app_launch,2025-06-01 12:00:00+00\n",
    )
    .await
    .expect("identity-keyed copy");
    assert_eq!(n, 5);
    assert_eq!(one(&c, "SELECT count(*) FROM contacts").await, "4");
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {known}")
        )
        .await,
        "1"
    );
    assert_eq!(
        one(&c, "SELECT count(DISTINCT contact_id) FROM events").await,
        "4"
    );
    let bob: i64 = one(
        &c,
        "SELECT contact_id FROM identities WHERE id_value = 'bob'",
    )
    .await
    .parse()
    .unwrap();
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {bob}")
        )
        .await,
        "2"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT last_active_at FROM contacts WHERE id = {bob}")
        )
        .await,
        "2025-06-01 10:00:01+00"
    );
    // text format, openid and unionid
    copy_in(
        &c,
        "COPY events (openid, unionid, channel_id, event, event_date) FROM STDIN",
        "o1\tun1\twx\tsubscribe\t2025-06-01 10:00:00+00\n\\N\tun1\twx\tclick_menu\t2025-06-01 10:01:00+00\n",
    )
    .await
    .expect("openid copy");
    let un: i64 = one(
        &c,
        "SELECT contact_id FROM identities WHERE id_type = 'wechat.unionid'",
    )
    .await
    .parse()
    .unwrap();
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {un}")
        )
        .await,
        "2"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM identities WHERE contact_id = {un}")
        )
        .await,
        "2"
    );
    // an external_id without channel_id is an error; the statement applies nothing
    let before = one(&c, "SELECT count(*) FROM events").await;
    let err = copy_in(
        &c,
        "COPY events (external_id, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        "dave,app,app_launch,2025-06-01 10:00:00+00\nerin,,app_launch,2025-06-01 10:00:00+00\n",
    )
    .await
    .expect_err("missing channel");
    assert_eq!(err.code.as_deref(), Some("23502"), "{err}");
    assert_eq!(one(&c, "SELECT count(*) FROM events").await, before);
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM identities WHERE id_value = 'dave'"
        )
        .await,
        "0"
    );
    // INSERT with identity columns
    let n = exec(
        &c,
        "INSERT INTO events (external_id, channel_id, event, event_date) VALUES ('bob', 'app', 'app_launch', '2025-06-02 10:00:00+00'), ('frank', 'app', 'app_launch', '2025-06-02 10:00:00+00')",
    )
    .await;
    assert_eq!(n, 2);
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {bob}")
        )
        .await,
        "3"
    );
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM identities WHERE id_value = 'frank'"
        )
        .await,
        "1"
    );
    // contacts by identity: COPY and INSERT identify (update or create, openid merge)
    copy_in(
        &c,
        "COPY contacts (external_id, channel_id, name, email, utm_source) FROM STDIN (FORMAT csv)",
        "bob,app,Bob,bob@example.com,csv\ngina,app,Gina,,csv\n",
    )
    .await
    .expect("identity-keyed contacts copy");
    assert_eq!(
        one(
            &c,
            &format!(
                "SELECT name || '/' || email || '/' || utm_source FROM contacts WHERE id = {bob}"
            )
        )
        .await,
        "Bob/bob@example.com/csv"
    );
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM identities WHERE id_value = 'gina'"
        )
        .await,
        "1"
    );
    exec(&c, "INSERT INTO contacts (external_id, channel_id, unionid, name) VALUES ('hank', 'crm', 'un1', 'Hank')").await;
    assert_eq!(
        one(
            &c,
            "SELECT contact_id FROM identities WHERE id_value = 'hank'"
        )
        .await,
        un.to_string()
    );
    assert_eq!(
        one(&c, &format!("SELECT name FROM contacts WHERE id = {un}")).await,
        "Hank"
    );
}

#[tokio::test]
async fn merge_contacts_counts_one_contact() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(&c, "INSERT INTO contacts (id, name, email, city, updated_at) VALUES (1, 'Old', 'old@example.com', 'Shanghai', '2025-01-01 00:00:00+00')").await;
    exec(
        &c,
        "INSERT INTO contacts (id, name, mobile_phone, city) VALUES (2, 'New', '13800138000', '')",
    )
    .await;
    identify(&c, "app", "x1", "{}").await; // contact 3
    exec(&c, "INSERT INTO events (contact_id, event, event_date) VALUES (1, 'app_launch', '2025-06-01 10:00:00+00'), (2, 'app_launch', '2025-06-01 11:00:00+00'), (2, 'custom_order', '2025-06-02 11:00:00+00'), (3, 'app_launch', '2025-06-01 09:00:00+00')").await;
    exec(&c, "CALL merge_contacts(1, 2)").await;
    assert_eq!(one(&c, "SELECT count(*) FROM contacts").await, "2");
    assert_eq!(
        one(&c, "SELECT count(*) FROM contacts WHERE id = 2").await,
        "0"
    );
    assert_eq!(
        one(&c, "SELECT count(*) FROM events WHERE contact_id = 2").await,
        "0"
    );
    assert_eq!(
        one(&c, "SELECT count(*) FROM events WHERE contact_id = 1").await,
        "3"
    );
    assert_eq!(
        one(
            &c,
            "SELECT count(DISTINCT contact_id) FROM event_view WHERE event = 'app_launch'"
        )
        .await,
        "2"
    );
    // newest non-empty value wins, older fills the gaps
    assert_eq!(
        one(&c, "SELECT name || '/' || email || '/' || mobile_phone || '/' || city FROM contacts WHERE id = 1").await,
        "New/old@example.com/13800138000/Shanghai"
    );
    // identities follow: merge the identified contact 3 into 1
    exec(&c, "CALL merge_contacts(1, 3)").await;
    assert_eq!(
        one(
            &c,
            "SELECT contact_id FROM identities WHERE id_value = 'x1'"
        )
        .await,
        "1"
    );
    assert_eq!(identify(&c, "app", "x1", "{}").await, (1, false));
    // a retired id: events sent for it land on the target; merging it again is an error
    exec(&c, "INSERT INTO events (contact_id, event, event_date) VALUES (2, 'app_show', '2025-06-03 10:00:00+00')").await;
    assert_eq!(
        one(&c, "SELECT count(*) FROM events WHERE contact_id = 1").await,
        "5"
    );
    expect_sqlstate(&c, "CALL merge_contacts(1, 2)", "22023").await;
    expect_sqlstate(&c, "CALL merge_contacts(1, 99)", "42704").await;
    // survives a restart
    let data = server.data_dir().to_path_buf();
    drop(c);
    let mut server = server;
    server.stop();
    let server2 = TestServer::start_with(&data, &[]);
    let c = server2.client().await;
    assert_eq!(
        one(&c, "SELECT count(*) FROM events WHERE contact_id = 1").await,
        "5"
    );
    assert_eq!(one(&c, "SELECT count(*) FROM contacts").await, "1");
}

#[tokio::test]
async fn concurrent_identify_creates_one_contact() {
    let server = TestServer::start();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..5 {
                out.push(
                    identify(
                        &client,
                        "app",
                        "same_user",
                        &format!(r#"{{"comment":"t{i}"}}"#),
                    )
                    .await,
                );
            }
            out
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.expect("task"));
    }
    let ids: std::collections::HashSet<i64> = results.iter().map(|r| r.0).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.1).count(), 1, "{results:?}");
    let c = server.client().await;
    assert_eq!(one(&c, "SELECT count(*) FROM contacts").await, "1");
    assert_eq!(one(&c, "SELECT count(*) FROM identities").await, "1");
}

#[tokio::test]
async fn dedupe_rules_with_placeholders() {
    let server = TestServer::start();
    let c = server.client().await;
    exec(
        &c,
        "INSERT INTO contacts (id, mobile_phone, email, id_card) VALUES \
         (1, '13800000001', 'a@example.com', 'X1'), \
         (2, '13800000001', 'b@example.com', 'X2'), \
         (3, '13900000003', 'B@example.com', NULL), \
         (4, NULL, NULL, 'null'), \
         (5, NULL, NULL, 'null'), \
         (6, '13700000006', 'f@example.com', 'X6'), \
         (7, '13700000006', 'f@example.com', 'X6'), \
         (8, '13700000006', 'g@example.com', 'X8')",
    )
    .await;
    exec(&c, "INSERT INTO events (contact_id, event, event_date) VALUES (2, 'app_launch', '2025-06-01 10:00:00+00'), (3, 'app_launch', '2025-06-01 10:00:00+00')").await;
    // all-of: only 6 and 7 share phone AND email
    exec(&c, "CALL set_dedupe_rule('all', ARRAY['mobile_phone','email'], ARRAY['nil','null','undefined','1'])").await;
    let rows = simple_rows(&c, "CALL dedupe_contacts(true)").await;
    assert_eq!(rows, vec![vec![Some("6".into()), Some("7".into())]]);
    assert_eq!(
        one(&c, "SELECT count(*) FROM contacts").await,
        "8",
        "dry run changes nothing"
    );
    // any-of (the default rule): 1-2 (phone), 2-3 (email, case-insensitive), 6-7-8 (phone);
    // 4 and 5 share only placeholders
    exec(&c, "CALL set_dedupe_rule('any', ARRAY['mobile_phone','email','id_card'], ARRAY['nil','null','undefined','1'])").await;
    let rows = simple_rows(&c, "CALL dedupe_contacts(true)").await;
    let pairs: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("1", "2"), ("1", "3"), ("6", "7"), ("6", "8")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .to_vec()
    );
    assert_eq!(one(&c, "CALL dedupe_contacts()").await, "4");
    assert_eq!(
        one(
            &c,
            "SELECT string_agg(CAST(id AS VARCHAR), ',' ORDER BY id) FROM contacts"
        )
        .await,
        "1,4,5,6"
    );
    assert_eq!(
        one(&c, "SELECT count(*) FROM events WHERE contact_id = 1").await,
        "2"
    );
    assert_eq!(one(&c, "CALL dedupe_contacts()").await, "0");
    // without placeholders 4 and 5 match on id_card 'null'
    exec(
        &c,
        "CALL set_dedupe_rule('any', ARRAY['id_card'], ARRAY[]::VARCHAR[])",
    )
    .await;
    assert_eq!(one(&c, "CALL dedupe_contacts()").await, "1");
    expect_sqlstate(&c, "CALL set_dedupe_rule('some', ARRAY['email'])", "22023").await;
    expect_sqlstate(&c, "CALL set_dedupe_rule('any', ARRAY['name'])", "22023").await;
}

#[tokio::test]
async fn delete_contact_data_erases_one_channel() {
    let server = TestServer::start();
    let c = server.client().await;
    let (id, _) = identify(
        &c,
        "shop",
        "del_me",
        r#"{"name":"张三","email":"z@example.com","mobilePhone":"13800000000","city":"上海"}"#,
    )
    .await;
    let (other, _) = identify(
        &c,
        "crm",
        "crm_7",
        r#"{"weChatInfo":{"appId":"wx","openId":"o_del"}}"#,
    )
    .await;
    exec(&c, &format!("CALL merge_contacts({id}, {other})")).await;
    copy_in(
        &c,
        "COPY events (contact_id, channel_id, event, event_date) FROM STDIN (FORMAT csv)",
        &format!("{id},shop,app_launch,2025-06-01 10:00:00+00\n{id},shop,custom_order,2025-06-01 10:05:00+00\n{id},crm,app_launch,2025-06-02 10:00:00+00\n{id},,app_show,2025-06-02 10:00:00+00\n"),
    )
    .await
    .expect("events");
    exec(&c, "CALL delete_contact_data('shop', 'del_me')").await;
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {id}")
        )
        .await,
        "2"
    );
    assert_eq!(
        one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {id} AND channel_id = 'shop'")
        )
        .await,
        "0"
    );
    let rows = simple_rows(
        &c,
        &format!(
            "SELECT id_type, channel_id FROM identities WHERE contact_id = {id} ORDER BY id_type"
        ),
    )
    .await;
    assert_eq!(
        rows.len(),
        2,
        "crm external_id and the openid stay: {rows:?}"
    );
    assert!(!rows.iter().any(|r| r[1].as_deref() == Some("shop")));
    let rows = simple_rows(&c, &format!("SELECT name, email, mobile_phone, city, created_at IS NOT NULL, is_identified FROM contacts WHERE id = {id}")).await;
    assert_eq!(
        rows[0],
        vec![
            Some("已注销".into()),
            None,
            None,
            None,
            Some("t".into()),
            Some("t".into())
        ]
    );
    // idempotent: the account is gone
    exec(&c, "CALL delete_contact_data('shop', 'del_me')").await;
    assert_eq!(
        one(
            &c,
            "SELECT count(*) FROM identities WHERE id_value = 'del_me'"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn merge_interrupted_by_kill9_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_with(&data, &[]);
    let rounds = 4;
    {
        let c = server.client().await;
        for r in 0..rounds {
            let (t, s) = (2 * r + 1, 2 * r + 2);
            exec(
                &c,
                &format!("INSERT INTO contacts (id, name) VALUES ({t}, 't{r}'), ({s}, 's{r}')"),
            )
            .await;
            let mut csv = String::new();
            for i in 0..20_000 {
                csv.push_str(&format!(
                    "{s},app_launch,2025-06-{:02} {:02}:{:02}:{:02}+00\n",
                    1 + i % 20,
                    (i / 3600) % 24,
                    (i / 60) % 60,
                    i % 60
                ));
            }
            csv.push_str(&format!("{t},app_launch,2025-06-01 00:00:00+00\n"));
            copy_in(
                &c,
                "COPY events (contact_id, event, event_date) FROM STDIN (FORMAT csv)",
                &csv,
            )
            .await
            .expect("events");
        }
    }
    for r in 0..rounds {
        let (t, s) = (2 * r + 1, 2 * r + 2);
        let c = server.client().await;
        let call = tokio::spawn(async move {
            let res = c
                .simple_query(&format!("CALL merge_contacts({t}, {s})"))
                .await;
            (res.is_ok(), c)
        });
        tokio::time::sleep(Duration::from_millis(20 + 40 * r as u64)).await;
        server.kill9();
        let (acked, _c) = call.await.expect("call task");
        server = TestServer::start_with(&data, &[]);
        let c = server.client().await;
        let src_events: i64 = one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {s}"),
        )
        .await
        .parse()
        .unwrap();
        let tgt_events: i64 = one(
            &c,
            &format!("SELECT count(*) FROM events WHERE contact_id = {t}"),
        )
        .await
        .parse()
        .unwrap();
        let src_rows: i64 = one(&c, &format!("SELECT count(*) FROM contacts WHERE id = {s}"))
            .await
            .parse()
            .unwrap();
        eprintln!(
            "round {r}: merge acknowledged: {acked}, source row present after restart: {src_rows}"
        );
        match (src_rows, src_events, tgt_events) {
            (0, 0, 20_001) => {}
            (1, 20_000, 1) => assert!(!acked, "round {r}: an acknowledged merge was lost"),
            other => panic!("round {r}: merge half applied: (source row, source events, target events) = {other:?}"),
        }
        if src_rows == 1 {
            exec(&c, &format!("CALL merge_contacts({t}, {s})")).await;
            assert_eq!(
                one(
                    &c,
                    &format!("SELECT count(*) FROM events WHERE contact_id = {t}")
                )
                .await,
                "20001"
            );
        }
    }
}
