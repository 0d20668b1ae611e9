package dev.affinity.engine;

import java.util.Collection;
import org.opensearch.cluster.service.ClusterService;
import org.opensearch.env.Environment;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/** A real OpenSearch node whose modules are passed as classpath plugins. */
final class AffinityNode extends Node {

    AffinityNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
        super(environment, plugins, true);
    }

    /** The default sets a static SetOnce, which breaks a second node in one JVM; not needed here. */
    @Override
    protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {}
}
