import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;

import org.apache.kafka.common.utils.internals.Exit;  // Kafka 4.4 (before: common.utils.Exit)

/**
 * Runs several of Apache Kafka's command-line tools in one JVM, one after the
 * other, so that a test pays for one JVM start rather than one per tool.
 *
 * Argument: a file with one tool run per line, fields separated by tabs:
 * name, the text given on standard input ("-" for none, "\n" escaped as "\\n"),
 * the main class, then its arguments. For each run, standard output prints
 * "=== name exit=CODE" followed by what the tool wrote to stdout and stderr.
 * Exit.exit is turned into an exception, so a tool's exit ends only its run;
 * the first exit counts, with what the tool wrote before it (some tools catch
 * the exception and exit again).
 */
public class ToolRunner {
    static final class ToolExit extends RuntimeException {
        final int code;

        ToolExit(int code) {
            super(null, null, false, false);
            this.code = code;
        }
    }

    public static void main(String[] args) throws Exception {
        List<String> lines = Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8);
        PrintStream out = System.out;
        PrintStream err = System.err;
        InputStream in = System.in;
        Integer[] firstExit = {null};
        int[] cut = {0};
        ByteArrayOutputStream[] current = {null};
        Exit.Procedure exit = (code, message) -> {
            if (firstExit[0] == null) {
                firstExit[0] = code;
                cut[0] = current[0].size();
            }
            throw new ToolExit(code);
        };
        Exit.setExitProcedure(exit);
        Exit.setHaltProcedure(exit);
        for (String line : lines) {
            if (line.isBlank()) continue;
            String[] f = line.split("\t", -1);
            String name = f[0];
            String stdin = f[1].equals("-") ? "" : f[1].replace("\\n", "\n");
            String[] toolArgs = Arrays.copyOfRange(f, 3, f.length);
            ByteArrayOutputStream captured = new ByteArrayOutputStream();
            PrintStream capture = new PrintStream(captured, true, StandardCharsets.UTF_8);
            int code = 0;
            current[0] = captured;
            firstExit[0] = null;
            System.setOut(capture);
            System.setErr(capture);
            System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
            try {
                Method m = Class.forName(f[2]).getMethod("main", String[].class);
                m.invoke(null, (Object) toolArgs);
            } catch (InvocationTargetException e) {
                Throwable cause = e.getCause();
                if (cause instanceof ToolExit) {
                    code = ((ToolExit) cause).code;
                } else {
                    code = 99;
                    cause.printStackTrace(capture);
                }
            } finally {
                capture.flush();
                System.setOut(out);
                System.setErr(err);
                System.setIn(in);
            }
            byte[] written = captured.toByteArray();
            if (firstExit[0] != null) {
                code = firstExit[0];
                written = Arrays.copyOf(written, cut[0]);
            }
            out.println("=== " + name + " exit=" + code);
            out.print(new String(written, StandardCharsets.UTF_8));
            out.flush();
        }
        out.println("=== end");
        Runtime.getRuntime().halt(0);  // tools may leave non-daemon threads behind
    }
}
