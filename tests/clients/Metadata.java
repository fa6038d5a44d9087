// What pgJDBC (and the tools built on it: DBeaver, Metabase, sqlline) sees of a database:
// DatabaseMetaData over the tables and views of schema `public`, each column type through
// ResultSet.getObject, prepared statements with typed parameters, batch update counts.
// Prints one line per fact, so a run against freshet and one against PostgreSQL can be
// compared line by line. A failing call prints its SQLSTATE in place of its result.
// Run as a single-file program: java -cp postgresql.jar Metadata.java <url> <user>
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Properties;

public class Metadata {
    interface Probe {
        void run() throws SQLException;
    }

    static void probe(String name, Probe p) {
        try {
            p.run();
        } catch (SQLException e) {
            System.out.println(name + " ! " + e.getSQLState() + " " + e.getMessage().split("\n")[0]);
        }
    }

    /** The named columns of every row, one line each. */
    static void rows(String name, ResultSet rs, String... cols) throws SQLException {
        List<String> lines = new ArrayList<>();
        while (rs.next()) {
            StringBuilder b = new StringBuilder(name).append(" |");
            for (String c : cols) {
                b.append(' ').append(c).append('=').append(rs.getString(c));
            }
            lines.add(b.toString());
        }
        lines.forEach(System.out::println);
        System.out.println(name + " rows=" + lines.size());
    }

    static String show(Object o) {
        if (o == null) return "null";
        if (o instanceof java.sql.Array) {
            try {
                return "Array" + Arrays.deepToString((Object[]) ((java.sql.Array) o).getArray());
            } catch (SQLException e) {
                return "Array!" + e.getSQLState();
            }
        }
        if (o instanceof byte[]) return "bytes" + Arrays.toString((byte[]) o);
        return o.getClass().getSimpleName() + ":" + o;
    }

    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        try (Connection c = DriverManager.getConnection(args[0], p)) {
            DatabaseMetaData md = c.getMetaData();
            probe("tables", () -> rows("tables",
                    md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"}),
                    "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE"));
            probe("schemas", () -> rows("schemas", md.getSchemas(null, "public"), "TABLE_SCHEM"));
            probe("tableTypes", () -> {
                ResultSet rs = md.getTableTypes();
                int n = 0;
                boolean mv = false;
                while (rs.next()) {
                    n++;
                    mv |= rs.getString(1).equals("MATERIALIZED VIEW");
                }
                System.out.println("tableTypes some=" + (n > 3) + " matview=" + mv);
            });
            for (String t : new String[] {"customers", "orders", "customer_totals", "big_orders"}) {
                probe("columns " + t, () -> rows("columns " + t, md.getColumns(null, "public", t, "%"),
                        "COLUMN_NAME", "DATA_TYPE", "TYPE_NAME", "COLUMN_SIZE", "DECIMAL_DIGITS",
                        "NULLABLE", "IS_NULLABLE", "ORDINAL_POSITION", "IS_AUTOINCREMENT"));
                probe("primaryKeys " + t, () -> rows("primaryKeys " + t,
                        md.getPrimaryKeys(null, "public", t), "COLUMN_NAME", "KEY_SEQ", "PK_NAME"));
                probe("indexInfo " + t, () -> rows("indexInfo " + t,
                        md.getIndexInfo(null, "public", t, false, false),
                        "INDEX_NAME", "NON_UNIQUE", "COLUMN_NAME", "ORDINAL_POSITION"));
                probe("importedKeys " + t, () -> rows("importedKeys " + t,
                        md.getImportedKeys(null, "public", t), "PKTABLE_NAME", "FKCOLUMN_NAME"));
                probe("exportedKeys " + t, () -> rows("exportedKeys " + t,
                        md.getExportedKeys(null, "public", t), "FKTABLE_NAME", "FKCOLUMN_NAME"));
                probe("bestRowIdentifier " + t, () -> rows("bestRowIdentifier " + t,
                        md.getBestRowIdentifier(null, "public", t, DatabaseMetaData.bestRowSession, true),
                        "COLUMN_NAME", "TYPE_NAME"));
            }
            probe("typeInfo", () -> {
                ResultSet rs = md.getTypeInfo();
                List<String> wanted = Arrays.asList("int2", "int4", "int8", "numeric", "float4",
                        "float8", "bool", "text", "varchar", "bpchar", "date", "timestamp",
                        "timestamptz", "interval", "bytea", "jsonb", "uuid");
                List<String> lines = new ArrayList<>();
                while (rs.next()) {
                    if (wanted.contains(rs.getString("TYPE_NAME"))) {
                        lines.add("typeInfo | " + rs.getString("TYPE_NAME") + " " + rs.getInt("DATA_TYPE")
                                + " " + rs.getInt("PRECISION") + " " + rs.getString("NULLABLE"));
                    }
                }
                lines.stream().sorted().forEach(System.out::println);
            });
            probe("functions", () -> {
                ResultSet rs = md.getFunctions(null, "pg_catalog", "abs");
                int n = 0;
                while (rs.next()) n++;
                System.out.println("functions abs some=" + (n > 0));
            });
            probe("procedures", () -> {
                ResultSet rs = md.getProcedures(null, "public", "%");
                int n = 0;
                while (rs.next()) n++;
                System.out.println("procedures public=" + n);
            });
            probe("catalogs", () -> rows("catalogs", md.getCatalogs(), "TABLE_CAT"));
            probe("product", () -> System.out.println("product " + md.getDatabaseProductName()
                    + " major>=" + (md.getDatabaseMajorVersion() >= 14)));
            probe("keywords", () -> System.out.println("keywords some=" + (md.getSQLKeywords().length() > 10)));
            probe("resultSet", () -> {
                ResultSet rs = c.createStatement().executeQuery("SELECT * FROM orders ORDER BY id");
                ResultSetMetaData m = rs.getMetaData();
                while (rs.next()) {
                    for (int i = 1; i <= m.getColumnCount(); i++) {
                        String col = m.getColumnName(i);
                        System.out.println("resultSet | " + col + " " + m.getColumnTypeName(i) + " "
                                + m.getColumnType(i) + " " + m.getPrecision(i) + " " + m.getScale(i)
                                + " " + show(rs.getObject(i)) + " string=" + rs.getString(i));
                    }
                }
            });
            probe("prepared", () -> {
                PreparedStatement ps = c.prepareStatement(
                        "SELECT id, amount, placed, paid FROM orders WHERE customer_id = ? AND amount > ? "
                                + "AND placed < ? AND paid = ? ORDER BY id");
                ps.setInt(1, 1);
                ps.setBigDecimal(2, new BigDecimal("1.5"));
                ps.setTimestamp(3, Timestamp.valueOf("2027-01-01 00:00:00"));
                ps.setBoolean(4, true);
                ResultSet rs = ps.executeQuery();
                rows("prepared", rs, "id", "amount", "placed", "paid");
                ResultSetMetaData m = ps.getMetaData();
                System.out.println("prepared types " + m.getColumnTypeName(1) + " " + m.getColumnTypeName(2)
                        + " " + m.getColumnTypeName(3) + " " + m.getColumnTypeName(4));
            });
            probe("batch", () -> {
                c.setAutoCommit(false);
                PreparedStatement ps = c.prepareStatement("INSERT INTO customers (id, name) VALUES (?, ?)");
                for (int i = 100; i < 103; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "batch" + i);
                    ps.addBatch();
                }
                System.out.println("batch insert " + Arrays.toString(ps.executeBatch()));
                Statement st = c.createStatement();
                st.addBatch("UPDATE customers SET note = 'b' WHERE id >= 100");
                st.addBatch("DELETE FROM customers WHERE id = 102");
                System.out.println("batch statements " + Arrays.toString(st.executeBatch()));
                c.rollback();
                ResultSet rs = c.createStatement().executeQuery("SELECT count(*) FROM customers WHERE id >= 100");
                rs.next();
                System.out.println("batch after rollback " + rs.getLong(1));
                c.setAutoCommit(true);
            });
            probe("nulls", () -> {
                PreparedStatement ps = c.prepareStatement("SELECT ?::text IS NULL, ?::int IS NULL, coalesce(?, 'x')");
                ps.setNull(1, java.sql.Types.VARCHAR);
                ps.setNull(2, java.sql.Types.INTEGER);
                ps.setNull(3, java.sql.Types.VARCHAR);
                rows("nulls", ps.executeQuery(), "?column?", "coalesce");
            });
            probe("error", () -> c.createStatement().executeQuery("SELECT nope FROM orders"));
        }
    }
}
