package io.signalstage.testenv.registry.configindex.deployment;

import io.apicurio.common.apps.config.Dynamic;
import io.apicurio.common.apps.config.DynamicConfigPropertyDef;
import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import io.quarkus.arc.deployment.SyntheticBeanBuildItem;
import io.quarkus.deployment.annotations.BuildStep;
import io.quarkus.deployment.annotations.ExecutionTime;
import io.quarkus.deployment.annotations.Record;
import io.quarkus.deployment.builditem.CombinedIndexBuildItem;
import io.quarkus.deployment.builditem.FeatureBuildItem;
import io.signalstage.testenv.registry.configindex.DynamicPropertyListRecorder;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import javax.inject.Singleton;
import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.jandex.AnnotationInstance;
import org.jboss.jandex.AnnotationTarget;
import org.jboss.jandex.AnnotationValue;
import org.jboss.jandex.DotName;
import org.jboss.jandex.Type;

/**
 * Collects the registry's dynamic configuration properties: every injection point that carries both
 * {@code @Dynamic} and {@code @ConfigProperty}. The registry's DynamicConfigPropertyIndexImpl injects the
 * resulting {@link DynamicConfigPropertyList}; without that bean the application does not start.
 */
class DynamicPropertiesProcessor {
    private static final DotName DYNAMIC = DotName.createSimple(Dynamic.class.getName());
    private static final DotName CONFIG_PROPERTY = DotName.createSimple(ConfigProperty.class.getName());

    @BuildStep
    FeatureBuildItem feature() {
        return new FeatureBuildItem("signalstage-registry-config-index");
    }

    @BuildStep
    @Record(ExecutionTime.STATIC_INIT)
    SyntheticBeanBuildItem dynamicProperties(CombinedIndexBuildItem index, DynamicPropertyListRecorder recorder) {
        List<DynamicConfigPropertyDef> defs = new ArrayList<>();
        for (AnnotationInstance dynamic : index.getIndex().getAnnotations(DYNAMIC)) {
            AnnotationTarget target = dynamic.target();
            AnnotationInstance property;
            Type type;
            switch (target.kind()) {
                case FIELD:
                    property = target.asField().annotation(CONFIG_PROPERTY);
                    type = target.asField().type();
                    break;
                case METHOD_PARAMETER:
                    property = target.asMethodParameter().annotation(CONFIG_PROPERTY);
                    type = target.asMethodParameter().type();
                    break;
                case METHOD:
                    // The registry's producer of dynamic values is qualified @Dynamic: not a property.
                    continue;
                default:
                    throw new IllegalStateException("@Dynamic on " + target + ": only fields and parameters are handled");
            }
            if (property == null) {
                throw new IllegalStateException("@Dynamic without @ConfigProperty on " + target);
            }
            DynamicConfigPropertyDef def = new DynamicConfigPropertyDef(
                    property.value("name").asString(), valueClass(type, target), defaultValue(property));
            def.setLabel(string(dynamic, "label"));
            def.setDescription(string(dynamic, "description"));
            AnnotationValue requires = dynamic.value("requires");
            def.setRequires(requires == null ? new String[0] : requires.asStringArray());
            defs.add(def);
        }
        defs.sort(Comparator.comparing(DynamicConfigPropertyDef::getName));
        return SyntheticBeanBuildItem.configure(DynamicConfigPropertyList.class)
                .scope(Singleton.class)
                .unremovable()
                .runtimeValue(recorder.propertyList(defs))
                .done();
    }

    private static String defaultValue(AnnotationInstance property) {
        AnnotationValue v = property.value("defaultValue");
        if (v == null || ConfigProperty.UNCONFIGURED_VALUE.equals(v.asString())) {
            return null;
        }
        return v.asString();
    }

    private static String string(AnnotationInstance a, String member) {
        AnnotationValue v = a.value(member);
        return v == null ? "" : v.asString();
    }

    /** The property's value type: T for a Supplier<T> (how the registry injects dynamic values), else the type. */
    private static Class<?> valueClass(Type type, AnnotationTarget target) {
        Type t = type;
        if (t.kind() == Type.Kind.PARAMETERIZED_TYPE && !t.asParameterizedType().arguments().isEmpty()) {
            t = t.asParameterizedType().arguments().get(0);
        }
        String name = t.kind() == Type.Kind.PRIMITIVE ? boxed(t.asPrimitiveType()) : t.name().toString();
        try {
            return Class.forName(name, false, Thread.currentThread().getContextClassLoader());
        } catch (ClassNotFoundException e) {
            throw new IllegalStateException("type " + name + " of dynamic property on " + target, e);
        }
    }

    private static String boxed(org.jboss.jandex.PrimitiveType p) {
        switch (p.primitive()) {
            case BOOLEAN: return Boolean.class.getName();
            case INT: return Integer.class.getName();
            case LONG: return Long.class.getName();
            default: throw new IllegalStateException("primitive dynamic property type " + p);
        }
    }
}
