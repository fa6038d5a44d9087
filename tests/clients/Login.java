// Logs in with pgJDBC and prints current_user, or the SQLSTATE the login failed with.
// Run as a single-file program: java -cp postgresql.jar Login.java <url> <user> <password>
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.Properties;

public class Login {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], p)) {
            ResultSet rs = c.createStatement().executeQuery("SELECT current_user");
            rs.next();
            System.out.println(rs.getString(1));
        } catch (SQLException e) {
            System.out.println(e.getSQLState());
        }
    }
}
