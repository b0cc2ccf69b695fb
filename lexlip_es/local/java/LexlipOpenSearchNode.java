import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts N OpenSearch nodes in one JVM through codelibs' OpenSearchRunner with explicit loopback ports.
 * The runner's own main() caps HTTP ports at 9299 and leaves transport ports to chance; this launcher does not.
 *
 * Usage: LexlipOpenSearchNode BASE_PATH CLUSTER_NAME HTTP_PORTS TRANSPORT_PORTS READY_FILE
 * (ports comma-separated, one per node). READY_FILE is written once every node has started.
 */
public final class LexlipOpenSearchNode {
    private LexlipOpenSearchNode() {
    }

    public static void main(final String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: LexlipOpenSearchNode BASE_PATH CLUSTER_NAME HTTP_PORTS TRANSPORT_PORTS READY_FILE");
            System.exit(2);
        }
        final String basePath = args[0];
        final String clusterName = args[1];
        final String[] httpPorts = args[2].split(",");
        final String[] transportPorts = args[3].split(",");
        final Path readyFile = Path.of(args[4]);
        if (httpPorts.length != transportPorts.length) {
            System.err.println("HTTP_PORTS and TRANSPORT_PORTS must have one entry per node");
            System.exit(2);
        }
        final int nodes = httpPorts.length;
        final List<String> seeds = new ArrayList<>();
        for (final String port : transportPorts) {
            seeds.add("127.0.0.1:" + port);
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> {
            settings.put("http.port", httpPorts[index - 1]);
            settings.put("transport.port", transportPorts[index - 1]);
            settings.put("network.host", "127.0.0.1");
            settings.putList("discovery.seed_hosts", seeds);
            // Test and demo nodes live on shared disks: never let a full disk turn indices read-only.
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
        });
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final Exception e) {
                System.err.println("close failed: " + e);
            }
        }));
        try {
            runner.build("-basePath", basePath, "-clusterName", clusterName, "-numOfNode", String.valueOf(nodes),
                    "-printOnFailure");
        } catch (final Exception e) {
            e.printStackTrace();
            System.exit(1);
        }
        Files.writeString(readyFile, String.valueOf(ProcessHandle.current().pid()));
        while (!runner.isClosed()) {
            Thread.sleep(1000);
        }
    }
}
