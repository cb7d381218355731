//! LTV `GROUP BY` an event column and a contact column with a contact
//! `WHERE`, over random data, against the same statement grouped by the
//! event column alone and restricted to one city at a time.

use cohortdb_tests::{exec, simple_rows, TestServer, TextRows};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CITIES: [Option<&str>; 5] = [Some("北京"), Some("上海"), Some("深圳"), Some("杭州"), None];
const CAMPAIGNS: [Option<&str>; 4] = [Some("spring"), Some("autumn"), Some("双十一"), None];

fn lit(v: Option<&str>) -> String {
    v.map_or("NULL".to_string(), |s| format!("'{s}'"))
}

async fn load(client: &tokio_postgres::Client, rng: &mut StdRng) {
    exec(client, "ALTER TABLE events ADD COLUMN p_amount DOUBLE").await;
    exec(client, "ALTER TABLE events ADD COLUMN p_campaign TEXT").await;
    let contacts = 240;
    let rows: Vec<String> = (1..=contacts)
        .map(|id| {
            let city = CITIES[rng.random_range(0..CITIES.len())];
            format!("({id}, 'c{id}', {})", lit(city))
        })
        .collect();
    exec(
        client,
        &format!(
            "INSERT INTO contacts (id, name, city) VALUES {}",
            rows.join(", ")
        ),
    )
    .await;
    let mut events = Vec::new();
    for id in 1..=contacts {
        // Distinct times per contact: a minute slot each, no ties.
        let mut slots: Vec<u32> = (0..14 * 24 * 60).collect();
        for _ in 0..rng.random_range(0..14) {
            let slot = slots.swap_remove(rng.random_range(0..slots.len()));
            let ts = format!(
                "2025-10-{:02} {:02}:{:02}:00+00",
                1 + slot / (24 * 60),
                slot / 60 % 24,
                slot % 60
            );
            let (event, amount, campaign) = if rng.random_bool(0.45) {
                let campaign = CAMPAIGNS[rng.random_range(0..CAMPAIGNS.len())];
                ("app_launch", "NULL".to_string(), lit(campaign))
            } else {
                let amount = if rng.random_bool(0.1) {
                    "NULL".to_string()
                } else {
                    rng.random_range(1..500).to_string()
                };
                ("custom_order", amount, "NULL".to_string())
            };
            events.push(format!("({id}, '{event}', '{ts}', {amount}, {campaign})"));
        }
    }
    for chunk in events.chunks(500) {
        exec(
            client,
            &format!(
                "INSERT INTO events (contact_id, event, event_date, p_amount, p_campaign) VALUES {}",
                chunk.join(", ")
            ),
        )
        .await;
    }
}

fn ltv(frame: &str, group_by: &str, filter: &str) -> String {
    format!(
        "LTV INITIAL EVENT event = 'app_launch' REVENUE event = 'custom_order' VALUE p_amount \
         {frame} GROUP BY {group_by} WHERE {filter} AS OF '2025-10-12 12:00:00'"
    )
}

fn sorted(mut rows: TextRows) -> TextRows {
    rows.sort();
    rows
}

#[tokio::test]
async fn ltv_group_by_event_and_contact_columns_matches_per_city_runs() {
    let server = TestServer::start();
    let client = server.client().await;
    let mut rng = StdRng::seed_from_u64(19);
    load(&client, &mut rng).await;

    let frames = [
        "FROM '2025-10-01' TO '2025-10-07' BY DAY PERIODS 4",
        "FROM '2025-10-01' TO '2025-10-14' BY WEEK PERIODS 1",
    ];
    let mut groups_seen = 0;
    for frame in frames {
        // The reference: one run per city, grouped by the event column only.
        let mut campaign_city = Vec::new();
        let mut city_campaign = Vec::new();
        for city in CITIES.iter().flatten().filter(|c| **c != "北京") {
            let rows = simple_rows(
                &client,
                &ltv(frame, "p_campaign", &format!("city = '{city}'")),
            )
            .await;
            for row in rows {
                let mut a = row.clone();
                a.insert(1, Some(city.to_string()));
                campaign_city.push(a);
                let mut b = row;
                b.insert(0, Some(city.to_string()));
                city_campaign.push(b);
            }
        }
        assert!(
            campaign_city.len() > 40,
            "the data should give several groups: {campaign_city:?}"
        );
        groups_seen += campaign_city.len();

        let mixed = simple_rows(
            &client,
            &ltv(frame, "p_campaign, contact.city", "city <> '北京'"),
        )
        .await;
        assert_eq!(sorted(mixed), sorted(campaign_city), "{frame}");
        let mixed = simple_rows(
            &client,
            &ltv(frame, "contact.city, p_campaign", "city <> '北京'"),
        )
        .await;
        assert_eq!(sorted(mixed), sorted(city_campaign), "{frame}");
    }
    assert!(groups_seen > 0);
}
