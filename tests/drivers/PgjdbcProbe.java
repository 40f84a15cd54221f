import java.sql.*;
import java.util.*;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;
import java.io.*;

/** pgjdbc through pgsplit: each check prints "ok <name>" or "FAIL <name> <error>"; the exit status
 * is 1 if any failed. Run by tests/drivers.rs as: PgjdbcProbe JDBC_URL TABLE. */
public class PgjdbcProbe {
    static int failures = 0;
    interface Check { void run() throws Exception; }
    static void check(String name, Check c) {
        try { c.run(); System.out.println("ok   " + name); }
        catch (Throwable e) { failures++; System.out.println("FAIL " + name + " " + e); }
    }
    static void eq(Object a, Object b) { if (!Objects.equals(a, b)) throw new AssertionError(a + " != " + b); }
    public static void main(String[] args) throws Exception {
        String url = args[0];
        String t = args[1];
        try (Connection c = DriverManager.getConnection(url)) {
            check("basic", () -> { try (Statement s = c.createStatement()) {
                s.execute("CREATE TABLE " + t + " (id int primary key, name text, ts timestamptz default now())"); } });
            check("prepared (server-side after 5 uses)", () -> {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " (id, name) VALUES (?, ?)");
                     PreparedStatement sel = c.prepareStatement("SELECT name FROM " + t + " WHERE id = ?")) {
                    for (int i = 1; i <= 20; i++) {
                        ins.setInt(1, i); ins.setString(2, "n" + i); ins.executeUpdate();
                        sel.setInt(1, i);
                        try (ResultSet rs = sel.executeQuery()) { rs.next(); eq(rs.getString(1), "n" + i); }
                    }
                } });
            check("batch", () -> { try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " (id, name) VALUES (?, ?)")) {
                for (int i = 100; i < 200; i++) { ins.setInt(1, i); ins.setString(2, "b"); ins.addBatch(); }
                ins.executeBatch(); }
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM " + t + " WHERE id >= 100")) { rs.next(); eq(rs.getLong(1), 100L); } });
            check("transaction", () -> {
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.executeUpdate("UPDATE " + t + " SET name = 'x' WHERE id = 1");
                    try (ResultSet rs = s.executeQuery("SELECT name FROM " + t + " WHERE id = 1")) { rs.next(); eq(rs.getString(1), "x"); }
                }
                c.commit(); c.setAutoCommit(true); });
            check("read-only transaction", () -> {
                c.setAutoCommit(false); c.setReadOnly(true);
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM " + t)) { rs.next(); }
                c.commit(); c.setReadOnly(false); c.setAutoCommit(true); });
            check("fetch size cursor", () -> {
                c.setAutoCommit(false);
                try (PreparedStatement s = c.prepareStatement("SELECT id FROM " + t + " ORDER BY id")) {
                    s.setFetchSize(7); int n = 0;
                    try (ResultSet rs = s.executeQuery()) { while (rs.next()) n++; }
                    eq(n, 120);
                }
                c.commit(); c.setAutoCommit(true); });
            check("copy", () -> {
                CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
                StringBuilder sb = new StringBuilder(); for (int i = 300; i < 400; i++) sb.append(i).append("\tc\n");
                long n = cm.copyIn("COPY " + t + " (id, name) FROM STDIN", new StringReader(sb.toString()));
                eq(n, 100L);
                StringWriter w = new StringWriter();
                cm.copyOut("COPY (SELECT id FROM " + t + " WHERE id >= 300) TO STDOUT", w);
                eq(w.toString().split("\n").length, 100); });
            check("errors", () -> {
                try (Statement s = c.createStatement()) {
                    try { s.executeQuery("SELECT * FROM no_such_table"); throw new AssertionError("no error"); }
                    catch (SQLException e) { eq(e.getSQLState(), "42P01"); }
                    try (ResultSet rs = s.executeQuery("SELECT 1")) { rs.next(); eq(rs.getInt(1), 1); }
                } });
            check("read your writes", () -> {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + t + " (id, name) VALUES (?, 'r')");
                     PreparedStatement sel = c.prepareStatement("SELECT name FROM " + t + " WHERE id = ?")) {
                    for (int i = 500; i < 530; i++) {
                        ins.setInt(1, i); ins.executeUpdate(); sel.setInt(1, i);
                        try (ResultSet rs = sel.executeQuery()) { if (!rs.next()) throw new AssertionError("missing " + i); eq(rs.getString(1), "r"); }
                    }
                } });
            check("cancel", () -> {
                try (Statement s = c.createStatement()) {
                    s.setQueryTimeout(1);
                    try { s.execute("SELECT pg_sleep(5)"); throw new AssertionError("not cancelled"); }
                    catch (SQLException e) { eq(e.getSQLState(), "57014"); }
                    try (ResultSet rs = s.executeQuery("SELECT 2")) { rs.next(); eq(rs.getInt(1), 2); }
                } });
            check("listen/notify", () -> {
                try (Connection l = DriverManager.getConnection(url); Statement ls = l.createStatement(); Statement s = c.createStatement()) {
                    ls.execute("LISTEN " + t);
                    s.execute("NOTIFY " + t + ", 'hi'");
                    org.postgresql.PGNotification[] ns = l.unwrap(PGConnection.class).getNotifications(5000);
                    if (ns == null || ns.length == 0) throw new AssertionError("no notification");
                    eq(ns[0].getParameter(), "hi");
                } });
            check("pgsplit settings (pgjdbc sends SET over the extended protocol)", () -> {
                try (Statement s = c.createStatement()) {
                    s.execute("SET pgsplit.consistency = 'strong'");
                    for (int i = 0; i < 5; i++) {
                        try (ResultSet rs = s.executeQuery("SELECT pg_is_in_recovery()")) { rs.next(); eq(rs.getBoolean(1), false); }
                    }
                    // SHOW over the extended protocol; from the fifth run on, a named server-side statement.
                    try (PreparedStatement show = c.prepareStatement("SHOW pgsplit.consistency")) {
                        for (int i = 0; i < 7; i++) {
                            try (ResultSet rs = show.executeQuery()) { rs.next(); eq(rs.getString(1), "strong"); }
                        }
                    }
                    try { s.execute("SET pgsplit.consistency = 'sometimes'"); throw new AssertionError("no error"); }
                    catch (SQLException e) { eq(e.getSQLState(), "22023"); }
                    s.execute("RESET pgsplit.consistency");
                } });
            check("EXPLAIN ROUTE (pgjdbc sends it over the extended protocol)", () -> {
                // From the fifth run on, a named server-side statement.
                try (PreparedStatement explain = c.prepareStatement("EXPLAIN ROUTE DELETE FROM " + t)) {
                    for (int i = 0; i < 7; i++) {
                        try (ResultSet rs = explain.executeQuery()) {
                            rs.next();
                            eq(rs.getString("role"), "primary");
                            if (!rs.getString("reason").startsWith("write")) throw new AssertionError(rs.getString("reason"));
                        }
                    }
                } });
            check("metadata", () -> {
                DatabaseMetaData md = c.getMetaData();
                try (ResultSet rs = md.getColumns(null, "public", t, null)) { int n = 0; while (rs.next()) n++; eq(n, 3); } });
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
