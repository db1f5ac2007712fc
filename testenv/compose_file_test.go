package testenv

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// The stage services of deploy/docker-compose.yml, by the name of their binary.
var composeStages = []string{"ingest", "processor", "sink"}

// composeFile is the part of deploy/docker-compose.yml the deploy tests read.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string                       `yaml:"image"`
	Build       map[string]any               `yaml:"build"`
	Environment map[string]any               `yaml:"environment"`
	Volumes     []string                     `yaml:"volumes"`
	Restart     string                       `yaml:"restart"`
	DependsOn   map[string]map[string]string `yaml:"depends_on"`
	Healthcheck map[string]any               `yaml:"healthcheck"`
	ReadOnly    bool                         `yaml:"read_only"`
	MemLimit    string                       `yaml:"mem_limit"`
	CapDrop     []string                     `yaml:"cap_drop"`
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func readCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("deploy/docker-compose.yml: %v", err)
	}
	return c
}

var composeVar = regexp.MustCompile(`\$\$|\$\{([^}]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate expands s the way compose does: ${VAR}, $VAR, ${VAR:-default} (unset or empty), ${VAR-default}
// (unset), ${VAR:?message} and ${VAR?message} (an error), $$ (a literal $). Stricter than compose in one way:
// ${VAR} or $VAR of an unset variable is an error (compose warns and substitutes ""), so a variable the test
// forgot to set cannot pass unnoticed. Nested expansions are not supported (the compose file uses none).
func interpolate(s string, lookup func(string) (string, bool)) (string, error) {
	var err error
	out := composeVar.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		expr := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(m, "$"), "{"), "}")
		name, op, arg := expr, "", ""
		if i := strings.IndexAny(expr, ":-?"); i >= 0 {
			name, op = expr[:i], expr[i:i+1]
			if op == ":" && i+1 < len(expr) {
				op, arg = expr[i:i+2], expr[i+2:]
			} else {
				arg = expr[i+1:]
			}
		}
		v, set := lookup(name)
		switch op {
		case "":
			if !set {
				err = fmt.Errorf("%s is not set and has no default", name)
			}
			return v
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if !set || op == ":?" && v == "" {
				err = fmt.Errorf("%s: %s", name, arg)
			}
		default:
			err = fmt.Errorf("unsupported expansion %q", m)
		}
		return v
	})
	return out, err
}

func TestInterpolate(t *testing.T) {
	vars := map[string]string{"SET": "v", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{"${SET}", "v", ""}, {"$SET/x", "v/x", ""}, {"${UNSET}", "", "UNSET is not set and has no default"},
		{"${UNSET:-d}", "d", ""}, {"${EMPTY:-d}", "d", ""}, {"${SET:-d}", "v", ""},
		{"${UNSET-d}", "d", ""}, {"${EMPTY-d}", "", ""},
		{"${EMPTY:?need it}", "", "EMPTY: need it"}, {"${EMPTY?need it}", "", ""}, {"${UNSET?need it}", "", "UNSET: need it"},
		{"a$$b", "a$b", ""}, {"${SET:-:8080}x${UNSET:-:9}", "vx:9", ""}, {"${UNSET:-kafka:9092}", "kafka:9092", ""},
	} {
		got, err := interpolate(tc.in, lookup)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if gotErr != tc.err || tc.err == "" && got != tc.want {
			t.Errorf("interpolate(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// envReadByBinaries returns the SIGNALSTAGE_* variables each binary reads, as its -h (and each verb's) lists
// them: every flag's variables (schemas/envflag) and the secrets' variables, plus the variables of the Go runtime
// every binary honours.
func envReadByBinaries(t *testing.T) map[string]map[string]bool {
	t.Helper()
	bin := buildStages(t)
	name := regexp.MustCompile(`SIGNALSTAGE_[A-Z0-9_]*[A-Z0-9]`)
	verbs := map[string][][]string{"ingest": {{"-h"}}, "processor": {{"-h"}, {"replay", "-h"}, {"rules", "-h"}}, "sink": {{"-h"}}}
	out := map[string]map[string]bool{}
	for _, stage := range composeStages {
		vars := map[string]bool{"GOMEMLIMIT": true, "GOGC": true, "GOMAXPROCS": true, "GODEBUG": true}
		for _, args := range verbs[stage] {
			help, _ := exec.Command(filepath.Join(bin, stage), args...).CombinedOutput() // -h exits 0 or 2
			for _, v := range name.FindAllString(string(help), -1) {
				vars[v] = true
			}
		}
		if len(vars) < 20 {
			t.Fatalf("%s -h lists only %v: has the way the binaries read their environment changed?", stage, vars)
		}
		out[stage] = vars
	}
	return out
}

// TestComposeFile checks what the compose-spec schema cannot: each stage is configured only through variables
// its binary reads, restarts, waits for healthy dependencies, runs hardened, and every image is pinned.
func TestComposeFile(t *testing.T) {
	c := readCompose(t)
	read := envReadByBinaries(t)
	for name, svc := range c.Services {
		if svc.Image == "" || strings.HasSuffix(svc.Image, ":latest") || !strings.Contains(svc.Image, ":") {
			t.Errorf("service %s: image %q is not pinned to a tag", name, svc.Image)
		}
		for dep, cond := range svc.DependsOn {
			switch cond["condition"] {
			case "service_healthy":
				if c.Services[dep].Healthcheck == nil {
					t.Errorf("service %s waits for %s to be healthy, which has no healthcheck", name, dep)
				}
			case "service_completed_successfully":
			default:
				t.Errorf("service %s: depends_on %s without a condition (it would start before %s is ready)", name, dep, dep)
			}
		}
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.ContainsAny(src, "/.$") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s: volume %s is not declared under volumes:", name, src)
				}
			}
		}
	}
	for _, stage := range composeStages {
		svc, ok := c.Services[stage]
		if !ok {
			t.Fatalf("no service %s", stage)
		}
		if svc.Build["target"] != stage {
			t.Errorf("service %s: build target %v, want %s (deploy/Dockerfile)", stage, svc.Build["target"], stage)
		}
		if svc.Restart != "unless-stopped" && svc.Restart != "always" && svc.Restart != "on-failure" {
			t.Errorf("service %s: restart %q: a stage that exits (Kafka not up yet) would stay down", stage, svc.Restart)
		}
		if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") {
			t.Errorf("service %s: want read_only: true and cap_drop: [ALL]", stage)
		}
		if limit, goLimit := mebibytes(strings.ToUpper(svc.MemLimit)+"i"), goMemLimitOf(svc.Environment["GOMEMLIMIT"]); limit == 0 ||
			goLimit == 0 || goLimit >= limit {
			t.Errorf("service %s: want mem_limit above GOMEMLIMIT, got %q and %v", stage, svc.MemLimit, svc.Environment["GOMEMLIMIT"])
		}
		var unknown []string
		for k := range svc.Environment {
			if !read[stage][k] {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		if len(unknown) > 0 {
			t.Errorf("service %s sets %v, which %s does not read (a misspelled variable is silently ignored)", stage, unknown, stage)
		}
	}
}

// k8sObjects returns every object of the manifests under deploy/k8s (jobs included), by file.
func k8sObjects(t *testing.T) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	err := filepath.WalkDir(filepath.Join(repoRoot(), "deploy", "k8s"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		dec := yaml.NewDecoder(f)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); err == io.EOF {
				return nil
			} else if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if obj != nil && obj["kind"] != "Kustomization" {
				rel, _ := filepath.Rel(repoRoot(), path)
				out[rel] = append(out[rel], obj)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dig returns the value at path in nested maps (nil when absent).
func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func list(v any) []any { l, _ := v.([]any); return l }

// TestManifestsEnv checks the Kubernetes manifests the way TestComposeFile checks compose: every variable a stage
// container gets (env and the ConfigMaps of envFrom) is one its binary reads, or a helper another value expands
// with $(NAME); and each container runs hardened, with a memory limit above its GOMEMLIMIT.
func TestManifestsEnv(t *testing.T) {
	objs := k8sObjects(t)
	read := envReadByBinaries(t)
	configMaps := map[string][]string{}
	for _, inFile := range objs {
		for _, o := range inFile {
			if o["kind"] == "ConfigMap" {
				name := fmt.Sprint(dig(o, "metadata", "name"))
				data, _ := dig(o, "data").(map[string]any)
				for k := range data {
					configMaps[name] = append(configMaps[name], k)
				}
			}
		}
	}
	image := regexp.MustCompile(`signalstage-(ingest|processor|sink):`)
	expansion := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	containers := 0
	for file, inFile := range objs {
		for _, o := range inFile {
			pod := dig(o, "spec", "template", "spec") // Deployment, StatefulSet and Job alike
			if pod == nil {
				continue
			}
			where := fmt.Sprintf("%s: %v/%v", file, o["kind"], dig(o, "metadata", "name"))
			if dig(pod, "securityContext", "runAsNonRoot") != true || dig(pod, "enableServiceLinks") != false {
				t.Errorf("%s: want securityContext.runAsNonRoot and enableServiceLinks: false", where)
			}
			for _, c := range list(dig(pod, "containers")) {
				containers++
				m := image.FindStringSubmatch(fmt.Sprint(dig(c, "image")))
				if m == nil {
					t.Errorf("%s: container image %v is not a stage image", where, dig(c, "image"))
					continue
				}
				stage := m[1]
				names := map[string]bool{}
				helpers := map[string]bool{}
				for _, e := range list(dig(c, "env")) {
					names[fmt.Sprint(dig(e, "name"))] = true
					for _, h := range expansion.FindAllStringSubmatch(fmt.Sprint(dig(e, "value")), -1) {
						helpers[h[1]] = true
					}
				}
				for _, ef := range list(dig(c, "envFrom")) {
					cm := fmt.Sprint(dig(ef, "configMapRef", "name"))
					if _, ok := configMaps[cm]; !ok {
						t.Errorf("%s: envFrom ConfigMap %s is not in deploy/k8s", where, cm)
					}
					for _, k := range configMaps[cm] {
						names[k] = true
					}
				}
				for n := range names {
					if !read[stage][n] && !helpers[n] {
						t.Errorf("%s: container gets %s, which %s does not read", where, n, stage)
					}
				}
				sc := dig(c, "securityContext")
				if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false ||
					!slices.Contains(list(dig(sc, "capabilities", "drop")), any("ALL")) {
					t.Errorf("%s: want readOnlyRootFilesystem, no privilege escalation, capabilities dropped", where)
				}
				if o["kind"] != "Job" && (dig(c, "livenessProbe") == nil || dig(c, "readinessProbe") == nil) {
					t.Errorf("%s: want a liveness and a readiness probe", where)
				}
				if limit, goLimit := mebibytes(dig(c, "resources", "limits", "memory")), goMemLimit(c); limit == 0 ||
					goLimit == 0 || goLimit >= limit {
					t.Errorf("%s: want a memory limit above GOMEMLIMIT, got %v MiB and %v MiB", where, limit, goLimit)
				}
			}
		}
	}
	if containers < 5 {
		t.Fatalf("found %d stage containers in deploy/k8s, want the three stages and the jobs", containers)
	}
}

// mebibytes parses a Kubernetes quantity like 768Mi or 1Gi (0 otherwise).
func mebibytes(v any) int {
	s := fmt.Sprint(v)
	var n int
	switch {
	case strings.HasSuffix(s, "Gi"):
		fmt.Sscanf(strings.TrimSuffix(s, "Gi"), "%d", &n)
		return n << 10
	case strings.HasSuffix(s, "Mi"):
		fmt.Sscanf(strings.TrimSuffix(s, "Mi"), "%d", &n)
	}
	return n
}

func goMemLimit(c any) int {
	for _, e := range list(dig(c, "env")) {
		if dig(e, "name") == "GOMEMLIMIT" {
			return goMemLimitOf(dig(e, "value"))
		}
	}
	return 0
}

// goMemLimitOf parses a GOMEMLIMIT of the form NMiB (0 otherwise).
func goMemLimitOf(v any) int {
	var n int
	fmt.Sscanf(fmt.Sprint(v), "%dMiB", &n)
	return n
}
