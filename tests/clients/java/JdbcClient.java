// pgjdbc against cohortdb: extended protocol with explicit OIDs, server-prepared
// statements (binary after 5 executions), DatabaseMetaData.
import java.sql.*;
import java.util.*;

public class JdbcClient {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + System.getenv("COHORTDB_PORT") + "/cohortdb";
        Properties p = new Properties();
        p.setProperty("user", "admin");
        p.setProperty("prepareThreshold", "2");
        try (Connection c = DriverManager.getConnection(url, p)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductVersion().startsWith("16"), md.getDatabaseProductVersion());
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO contacts (name, email) VALUES ('Eve', 'eve@example.com')");
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT id, name, created_at FROM contacts WHERE name = ?")) {
                for (int i = 0; i < 7; i++) {
                    ps.setString(1, "Eve");
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row");
                        check(rs.getString(2).equals("Eve"), "name");
                        check(rs.getTimestamp(3) != null, "ts");
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::bigint + 1, ?::double precision, ?::boolean, ?::date")) {
                for (int i = 0; i < 7; i++) {
                    ps.setLong(1, 41);
                    ps.setDouble(2, 2.5);
                    ps.setBoolean(3, true);
                    ps.setDate(4, java.sql.Date.valueOf("2025-06-01"));
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "row");
                        check(rs.getLong(1) == 42, "bigint " + rs.getLong(1));
                        check(rs.getDouble(2) == 2.5, "double");
                        check(rs.getBoolean(3), "bool");
                        check(rs.getDate(4).toString().equals("2025-06-01"), "date " + rs.getDate(4));
                    }
                }
            }
            Set<String> tables = new HashSet<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME"));
            }
            check(tables.contains("contacts") && tables.contains("events"), "tables " + tables);
            Set<String> views = new HashSet<>();
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"VIEW"})) {
                while (rs.next()) views.add(rs.getString("TABLE_NAME"));
            }
            check(views.contains("contact_view"), "views " + views);
            Map<String, String> cols = new HashMap<>();
            try (ResultSet rs = md.getColumns(null, "public", "contacts", "%")) {
                while (rs.next()) cols.put(rs.getString("COLUMN_NAME"), rs.getString("TYPE_NAME"));
            }
            check("int8".equals(cols.get("id")), "columns " + cols);
            Set<String> schemas = new HashSet<>();
            try (ResultSet rs = md.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString(1));
            }
            check(schemas.contains("public"), "schemas " + schemas);
            // getPrimaryKeys: information_schema._pg_expandarray(i.indkey) and (keys).x / .n
            List<String> pk = new ArrayList<>();
            try (ResultSet rs = md.getPrimaryKeys(null, "public", "contacts")) {
                while (rs.next()) {
                    pk.add(rs.getString("COLUMN_NAME") + "/" + rs.getInt("KEY_SEQ") + "/" + rs.getString("PK_NAME"));
                }
            }
            check(pk.equals(List.of("id/1/contacts_pkey")), "primary key " + pk);
            // getTypeInfo: typinput = 'pg_catalog.array_in'::regproc
            Set<String> types = new HashSet<>();
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) types.add(rs.getString("TYPE_NAME"));
            }
            for (String t : List.of("int4", "int8", "text", "timestamptz", "bool")) {
                check(types.contains(t), "type info lacks " + t + ": " + types);
            }
            // bound parameters in CALL and identity-keyed INSERT (server-prepared after 2 runs)
            long contact = -1;
            try (PreparedStatement ps = c.prepareStatement("CALL identify(?, ?)")) {
                for (int i = 0; i < 4; i++) {
                    ps.setString(1, "wxapp_shop");
                    ps.setString(2, "jdbc-user");
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "identify row");
                        check(rs.getBoolean(2) == (i == 0), "created on the first call only");
                        check(contact < 0 || rs.getLong(1) == contact, "same contact");
                        contact = rs.getLong(1);
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO events (external_id, channel_id, event, event_date) VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < 3; i++) {
                    ps.setString(1, "jdbc-user");
                    ps.setString(2, "wxapp_shop");
                    ps.setString(3, "app_launch");
                    ps.setTimestamp(4, Timestamp.from(java.time.Instant.parse("2025-06-03T0" + i + ":00:00Z")));
                    check(ps.executeUpdate() == 1, "one row inserted");
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM events WHERE contact_id = ?")) {
                ps.setLong(1, contact);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getLong(1) == 3, "three events for the identified contact");
                }
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM nowhere");
                check(false, "expected error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "state " + e.getSQLState());
            }
        }
        System.out.println("pgjdbc ok");
    }
}
