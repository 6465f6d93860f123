// Lint rules: typescript-eslint's recommended set over the whole tree (run by `npm test` before the tests).
import stylistic from '@stylistic/eslint-plugin'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', '.tap/', 'node_modules/', 'public/'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      // Unused arguments keep a callback's documented shape (a leading underscore says so); a rest sibling drops fields.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }]
    }
  },
  {
    // Lines that fit beside a diff; a long message or pattern may run on rather than be cut mid-word.
    files: ['src/**/*.ts', 'emulator/**/*.ts'],
    plugins: { '@stylistic': stylistic },
    rules: {
      '@stylistic/max-len': ['error', {
        code: 140, ignoreRegExpLiterals: true, ignoreUrls: true
      }]
    }
  },
  {
    // Tests read JSON answers loosely; the types under test are the service's.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' }
  }
)
