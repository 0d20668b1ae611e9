package dev.affinity.engine;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.plugins.Plugin;

/**
 * Starts one OpenSearch node on 127.0.0.1 and keeps it running until SIGTERM.
 *
 * <p>Arguments: --home DIR (required; config/, logs/ and data/ live there unless --data is
 * given), --data DIR, --http-port N (0 = any free port), --transport-port N,
 * --cluster-name NAME, --node-name NAME. After start the node writes logs/http.ports; this
 * launcher then writes home/READY with the HTTP address so the Python side knows the node is
 * serving.
 *
 * <p>Without --seed-hosts the node is a cluster of its own (discovery.type single-node, new
 * indices without replicas). With --seed-hosts HOST:PORT,... (the transport addresses of the
 * other nodes) it joins them; --initial-cluster-managers NAME,... names the nodes that elect
 * the first cluster manager when the cluster forms for the first time (ignored once it has).
 */
public final class Main {

    /** Module plugin classes; a missing one is an error, not a silent skip. */
    private static final String[] MODULES = {
        "org.opensearch.transport.Netty4Plugin",
        "org.opensearch.painless.PainlessPlugin",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "org.opensearch.index.rankeval.RankEvalPlugin",
        "org.opensearch.index.reindex.ReindexPlugin",
        "org.opensearch.script.mustache.MustachePlugin",
        "org.opensearch.join.ParentJoinPlugin",
    };

    private Main() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        Path home = Path.of(require(args, "home")).toAbsolutePath();
        Path data = Path.of(args.getOrDefault("data", home.resolve("data").toString())).toAbsolutePath();
        Path logs = home.resolve("logs");
        Path config = home.resolve("config");
        for (Path p : List.of(config, logs, data, home.resolve("modules"), home.resolve("plugins"))) {
            Files.createDirectories(p);
        }
        Files.deleteIfExists(home.resolve("READY"));
        Files.deleteIfExists(logs.resolve("http.ports"));
        writeLogConfig(config);

        String nodeName = args.getOrDefault("node-name", "affinity-node");
        Settings.Builder builder = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", data.toString())
            .put("path.logs", logs.toString())
            .put("cluster.name", args.getOrDefault("cluster-name", "affinity-local"))
            .put("node.name", nodeName)
            .put("network.host", "127.0.0.1")
            .put("http.port", args.getOrDefault("http-port", "9200"))
            .put("transport.port", args.getOrDefault("transport-port", "0"))
            .put("node.portsfile", true)
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("action.auto_create_index", true);
        discovery(builder, args);
        Settings settings = builder.build();

        List<Class<? extends Plugin>> plugins = new ArrayList<>();
        for (String name : MODULES) {
            plugins.add(Class.forName(name).asSubclass(Plugin.class));
        }

        LogConfigurator.registerErrorListener();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, new HashMap<>(), config, () -> nodeName);
        LogConfigurator.configure(env);

        AffinityNode node = new AffinityNode(env, plugins);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "affinity-node-shutdown"));
        node.start();

        Path ports = logs.resolve("http.ports");
        String address = Files.exists(ports)
            ? Files.readAllLines(ports, StandardCharsets.UTF_8).get(0).trim()
            : "127.0.0.1:" + args.getOrDefault("http-port", "9200");
        Path tmp = home.resolve("READY.tmp");
        Files.writeString(tmp, address + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, home.resolve("READY"), StandardCopyOption.ATOMIC_MOVE);
        stopped.await();
    }

    /** One node alone, or one node of several that find each other through --seed-hosts. */
    private static void discovery(Settings.Builder builder, Map<String, String> args) {
        String seeds = args.get("seed-hosts");
        if (seeds == null) {
            builder.put("discovery.type", "single-node")
                .put("cluster.default_number_of_replicas", 0);
            return;
        }
        builder.putList("discovery.seed_hosts", List.of(seeds.split(",")));
        String managers = args.get("initial-cluster-managers");
        if (managers != null) {
            builder.putList("cluster.initial_cluster_manager_nodes", List.of(managers.split(",")));
        }
    }

    private static void writeLogConfig(Path config) throws IOException {
        Path target = config.resolve("log4j2.properties");
        try (InputStream in = Main.class.getResourceAsStream("/affinity-log4j2.properties")) {
            if (in == null) {
                throw new IllegalStateException(
                    "affinity-log4j2.properties missing from the launcher jar");
            }
            Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> out = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got: " + argv[i]);
            }
            out.put(argv[i].substring(2), argv[++i]);
        }
        return out;
    }

    private static String require(Map<String, String> args, String name) {
        String v = args.get(name);
        if (v == null) {
            throw new IllegalArgumentException("missing required argument --" + name);
        }
        return v;
    }
}
