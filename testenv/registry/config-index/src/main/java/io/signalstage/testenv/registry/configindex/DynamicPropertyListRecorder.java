package io.signalstage.testenv.registry.configindex;

import io.apicurio.common.apps.config.DynamicConfigPropertyDef;
import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import io.quarkus.runtime.RuntimeValue;
import io.quarkus.runtime.annotations.Recorder;
import java.util.List;

/** Builds, at static init, the bean the registry's configuration index injects. */
@Recorder
public class DynamicPropertyListRecorder {
    public RuntimeValue<DynamicConfigPropertyList> propertyList(List<DynamicConfigPropertyDef> defs) {
        return new RuntimeValue<>(new DynamicConfigPropertyList(defs));
    }
}
