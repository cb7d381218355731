//! COPY over the wire: text and csv into contacts, events and user tables,
//! errors naming the line and column with nothing applied, `ON_ERROR ignore`
//! with its NOTICE, and `COPY ... TO STDOUT` of tables and queries, through
//! tokio-postgres and through psql's `\copy`.

use std::process::Command;

use bytes::Bytes;
use cohortdb_tests::{exec, expect_sqlstate, simple_rows, SqlError, TestServer};
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

async fn copy_in(client: &Client, sql: &str, data: &str) -> Result<u64, SqlError> {
    let sink = client.copy_in(sql).await.map_err(|e| SqlError::from(&e))?;
    futures::pin_mut!(sink);
    // Split the data at awkward places: mid-line and mid-quoted-field.
    for chunk in data.as_bytes().chunks(7) {
        sink.send(Bytes::copy_from_slice(chunk))
            .await
            .map_err(|e| SqlError::from(&e))?;
    }
    sink.as_mut().finish().await.map_err(|e| SqlError::from(&e))
}

async fn copy_out(client: &Client, sql: &str) -> String {
    let stream = client.copy_out(sql).await.expect("copy out");
    futures::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("copy data"));
    }
    String::from_utf8(out).expect("utf-8")
}

async fn count(client: &Client, sql: &str) -> String {
    simple_rows(client, sql).await[0][0]
        .clone()
        .unwrap_or_default()
}

#[tokio::test]
async fn copy_in_and_out() {
    let server = TestServer::start();
    let client = server.client().await;

    // csv into contacts with quoting, embedded newline and NULLs
    let n = copy_in(
        &client,
        "COPY contacts (id, name, email, comment, mobile_phone) FROM STDIN (FORMAT csv)",
        "1,张三,zhang@example.com,\"likes, commas\",138-0013-8000\n2,\"Li \"\"Si\"\"\",,\"two\nlines\",\n3,,,,\n",
    )
    .await
    .expect("copy contacts");
    assert_eq!(n, 3);
    let rows = simple_rows(
        &client,
        "SELECT id, name, email, comment, mobile_phone, is_identified FROM contacts ORDER BY id",
    )
    .await;
    assert_eq!(
        rows[0],
        vec![
            Some("1".into()),
            Some("张三".into()),
            Some("zhang@example.com".into()),
            Some("likes, commas".into()),
            Some("13800138000".into()),
            Some("t".into())
        ]
    );
    assert_eq!(rows[1][1].as_deref(), Some("Li \"Si\""));
    assert_eq!(rows[1][2], None);
    assert_eq!(rows[1][3].as_deref(), Some("two\nlines"));
    assert_eq!(rows[2][5].as_deref(), Some("f"));

    // text format into events, with \N and a header-less tab layout
    exec(&client, "ALTER TABLE events ADD COLUMN p_amount DOUBLE").await;
    let n = copy_in(
        &client,
        "COPY events (contact_id, event, event_date, p_amount, channel_id) FROM STDIN",
        "1\tapp_launch\t2025-06-01 10:00:00+00\t\\N\twxapp_shop\n1\tcustom_order\t2025-06-01 10:05:00.250+00\t99.5\t\\N\n2\tapp_launch\t2025-06-02 08:00:00+08\t\\N\twxapp_shop\n",
    )
    .await
    .expect("copy events");
    assert_eq!(n, 3);
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        simple_rows(&client, "SELECT contact_id, event, event_date, event_day, p_amount, channel_id FROM event_view ORDER BY event_date").await,
        vec![
            vec![s("2"), s("app_launch"), s("2025-06-02 00:00:00+00"), s("2025-06-02"), None, s("wxapp_shop")],
            vec![s("1"), s("app_launch"), s("2025-06-01 10:00:00+00"), s("2025-06-01"), None, s("wxapp_shop")],
            vec![s("1"), s("custom_order"), s("2025-06-01 10:05:00.25+00"), s("2025-06-01"), s("99.5"), None],
        ]
        .into_iter()
        .fold(Vec::new(), |mut acc, r| {
            acc.push(r);
            acc.sort_by(|a, b| a[2].cmp(&b[2]));
            acc
        })
    );

    // a bad row fails the whole COPY, naming line and column; nothing applied
    let err = copy_in(
        &client,
        "COPY events (contact_id, event, event_date, p_amount) FROM STDIN (FORMAT csv)",
        "1,app_show,2025-06-03 10:00:00+00,\n1,app_show,2025-06-03 10:01:00+00,abc\n",
    )
    .await
    .expect_err("bad double");
    assert_eq!(err.code.as_deref(), Some("22P02"), "{err}");
    assert!(
        err.message.contains("line 2")
            && err.message.contains("p_amount")
            && err.message.contains("abc"),
        "{err}"
    );
    let err = copy_in(
        &client,
        "COPY events (contact_id, event, event_date) FROM STDIN (FORMAT csv)",
        "1,app_show,2025-06-03 10:00:00+00\n1,no_such_event,2025-06-03 10:01:00+00\n",
    )
    .await
    .expect_err("unknown event");
    assert_eq!(err.code.as_deref(), Some("22023"), "{err}");
    assert!(
        err.message.contains("line 2") && err.message.contains("no_such_event"),
        "{err}"
    );
    let err = copy_in(
        &client,
        "COPY contacts (name, email) FROM STDIN (FORMAT csv)",
        "ok,ok@example.com\nbad,not-an-email\n",
    )
    .await
    .expect_err("bad email");
    assert_eq!(err.code.as_deref(), Some("22023"), "{err}");
    assert!(
        err.message.contains("line 2") && err.message.contains("email"),
        "{err}"
    );
    // an unknown column fails before COPY mode starts (simple protocol: with
    // tokio-postgres' extended COPY an early error leaves a stray Sync behind)
    expect_sqlstate(
        &client,
        "COPY contacts (name, nosuch) FROM STDIN (FORMAT csv)",
        "42703",
    )
    .await;
    let err = copy_in(
        &client,
        "COPY contacts (name, email) FROM STDIN (FORMAT csv)",
        "only-one-field\n",
    )
    .await
    .expect_err("field count");
    assert_eq!(err.code.as_deref(), Some("22P04"), "{err}");
    assert_eq!(count(&client, "SELECT count(*) FROM events").await, "3");
    assert_eq!(count(&client, "SELECT count(*) FROM contacts").await, "3");

    // ON_ERROR ignore skips bad rows and says how many in a NOTICE
    let n = copy_in(
        &client,
        "COPY events (contact_id, event, event_date, p_amount) FROM STDIN (FORMAT csv, ON_ERROR ignore)",
        "1,app_show,2025-06-04 10:00:00+00,\n1,app_show,2025-06-04 10:01:00+00,abc\n99,app_show,2025-06-04 10:02:00+00,\n2,app_show,2025-06-04 10:03:00+00,1\n",
    )
    .await
    .expect("copy with on_error ignore");
    assert_eq!(n, 2);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM events WHERE event = 'app_show'"
        )
        .await,
        "2"
    );

    // user tables, csv with header
    exec(
        &client,
        "CREATE TABLE sku_dim (sku_id VARCHAR, colour VARCHAR, price DOUBLE)",
    )
    .await;
    let n = copy_in(
        &client,
        "COPY sku_dim FROM STDIN (FORMAT csv, HEADER true)",
        "sku_id,colour,price\ns1,red,9.9\ns2,\"blue, dark\",12\n",
    )
    .await
    .expect("copy sku_dim");
    assert_eq!(n, 2);

    // COPY TO STDOUT: tables, column lists and queries, text and csv
    assert_eq!(
        copy_out(&client, "COPY sku_dim TO STDOUT").await,
        "s1\tred\t9.9\ns2\tblue, dark\t12\n"
    );
    assert_eq!(
        copy_out(
            &client,
            "COPY sku_dim (colour, sku_id) TO STDOUT (FORMAT csv, HEADER true)"
        )
        .await,
        "colour,sku_id\nred,s1\n\"blue, dark\",s2\n"
    );
    assert_eq!(
        copy_out(&client, "COPY (SELECT id, name, email FROM contacts WHERE id <= 2 ORDER BY id) TO STDOUT (FORMAT csv)").await,
        "1,张三,zhang@example.com\n2,\"Li \"\"Si\"\"\",\n"
    );
    assert_eq!(
        copy_out(
            &client,
            "COPY (SELECT comment FROM contacts WHERE id = 2) TO STDOUT"
        )
        .await,
        "two\\nlines\n"
    );

    // psql's \copy, which uses COPY FROM STDIN / TO STDOUT underneath
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("sku.csv");
    std::fs::write(&file, "s3,green,1.5\ns4,black,2\n").expect("write csv");
    let psql = |cmd: &str| {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &server.port().to_string(),
                "-U",
                "admin",
                "-d",
                "cohortdb",
                "-c",
                cmd,
            ])
            .output()
            .expect("psql is installed (.ci/run installs postgresql-client)");
        assert!(
            out.status.success(),
            "psql {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    psql(&format!(
        "\\copy sku_dim FROM '{}' (FORMAT csv)",
        file.display()
    ));
    let out_file = dir.path().join("out.csv");
    psql(&format!(
        "\\copy (SELECT sku_id, price FROM sku_dim ORDER BY sku_id) TO '{}' (FORMAT csv)",
        out_file.display()
    ));
    assert_eq!(
        std::fs::read_to_string(&out_file).expect("read"),
        "s1,9.9\ns2,12\ns3,1.5\ns4,2\n"
    );
}
