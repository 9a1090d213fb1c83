// Health probe (and tiny bootstrap runner) for Cassandra used by scripts/stack.
// Connects over CQL (DataStax driver 3.x, which cassandra-all already ships as
// cassandra-driver-core-*-shaded) and prints system.local's release_version.
// Usage: java -cp "<cassandra lib>/*:<dir>" CqlProbe HOST PORT [options]
//   --user NAME            authenticate (PlainTextAuthProvider) as NAME
//   --password-file FILE   ... with the password in FILE (trailing newline ignored)
//   --password VALUE       ... with a literal password (only for well-known defaults)
//   --ca PEM               TLS, trusting the CA certificate(s) in PEM; the server
//                          certificate must also match HOST (endpoint identification)
//   --ssl                  TLS with the JVM default trust (javax.net.ssl.trustStore...)
//   --exec FILE            after connecting, run each non-empty line of FILE as one
//                          CQL statement; ${file:PATH} in a line is replaced by the
//                          content of PATH (CQL-escaped). Secrets never appear in
//                          the output: their values are masked in error messages.
// Exit 0 and prints the version when everything succeeded, 1 otherwise
// (2 for usage errors).
import com.datastax.driver.core.Cluster;
import com.datastax.driver.core.RemoteEndpointAwareJdkSSLOptions;
import com.datastax.driver.core.Row;
import com.datastax.driver.core.Session;
import com.datastax.driver.core.SocketOptions;
import com.datastax.shaded.netty.channel.socket.SocketChannel;
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.TrustManagerFactory;

public class CqlProbe {
    // JDK TLS with the given context plus hostname verification of the server
    // certificate against the contact point (the driver's default does not verify).
    static final class VerifyingSSLOptions extends RemoteEndpointAwareJdkSSLOptions {
        VerifyingSSLOptions(SSLContext ctx) { super(ctx, null); }

        @Override
        protected SSLEngine newSSLEngine(SocketChannel channel, InetSocketAddress remote) {
            SSLEngine engine = super.newSSLEngine(channel, remote);
            SSLParameters p = engine.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            engine.setSSLParameters(p);
            return engine;
        }
    }

    private static final List<String> SECRETS = new ArrayList<>();

    private static String mask(String s) {
        if (s == null) return null;
        for (String secret : SECRETS) {
            if (!secret.isEmpty()) s = s.replace(secret, "***");
        }
        return s;
    }

    private static String readSecret(String path) throws Exception {
        String v = new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.UTF_8).trim();
        SECRETS.add(v);
        return v;
    }

    private static SSLContext contextTrusting(String pem) throws Exception {
        KeyStore ts = KeyStore.getInstance(KeyStore.getDefaultType());
        ts.load(null, null);
        try (InputStream in = new FileInputStream(pem)) {
            int i = 0;
            for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                ts.setCertificateEntry("ca" + i++, c);
            }
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ts);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }

    public static void main(String[] args) {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 9042;
        String user = null, password = null, ca = null, exec = null;
        boolean ssl = false;
        try {
            for (int i = 2; i < args.length; i++) {
                switch (args[i]) {
                    case "--user": user = args[++i]; break;
                    case "--password-file": password = readSecret(args[++i]); break;
                    case "--password": password = args[++i]; SECRETS.add(password); break;
                    case "--ca": ca = args[++i]; ssl = true; break;
                    case "--ssl": ssl = true; break;
                    case "--exec": exec = args[++i]; break;
                    default:
                        System.err.println("cql probe: unknown option " + args[i]);
                        System.exit(2);
                }
            }
        } catch (Exception e) {
            System.err.println("cql probe: bad arguments: " + mask(String.valueOf(e)));
            System.exit(2);
        }
        try {
            Cluster.Builder b = Cluster.builder()
                    .addContactPoint(host)
                    .withPort(port)
                    .withoutMetrics()
                    .withoutJMXReporting()
                    .withSocketOptions(new SocketOptions()
                            .setConnectTimeoutMillis(3000)
                            .setReadTimeoutMillis(5000));
            if (user != null) b = b.withCredentials(user, password == null ? "" : password);
            if (ca != null) {
                b = b.withSSL(new VerifyingSSLOptions(contextTrusting(ca)));
            } else if (ssl) {
                b = b.withSSL();
            }
            List<String> statements = new ArrayList<>();
            if (exec != null) {
                Pattern ref = Pattern.compile("\\$\\{file:([^}]+)\\}");
                for (String line : Files.readAllLines(Paths.get(exec), StandardCharsets.UTF_8)) {
                    if (line.trim().isEmpty() || line.trim().startsWith("--")) continue;
                    Matcher m = ref.matcher(line);
                    StringBuffer sb = new StringBuffer();
                    while (m.find()) {
                        String v = readSecret(m.group(1)).replace("'", "''");
                        m.appendReplacement(sb, Matcher.quoteReplacement(v));
                    }
                    m.appendTail(sb);
                    statements.add(sb.toString());
                }
            }
            try (Cluster cluster = b.build(); Session session = cluster.connect()) {
                for (int i = 0; i < statements.size(); i++) {
                    try {
                        session.execute(statements.get(i));
                    } catch (Exception e) {
                        System.err.println("cql probe: statement " + (i + 1) + " of " + exec
                                + " failed: " + mask(String.valueOf(e)));
                        System.exit(1);
                    }
                }
                Row row = session.execute("SELECT release_version FROM system.local").one();
                System.out.println(row.getString("release_version"));
                System.exit(0);
            }
        } catch (Exception e) {
            System.err.println("cql probe failed: " + mask(String.valueOf(e)));
            System.exit(1);
        }
    }
}
