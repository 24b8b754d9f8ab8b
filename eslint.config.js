'use strict'

// JavaScript because ESLint 9 loads a TypeScript config only through an extra loader (jiti).

// Type-checked lint of the TypeScript sources: no-floating-promises catches a forgotten await
// in a hook, which Haraka would not survive.
const tseslint = require('typescript-eslint')

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test/**/*.js', '.tmp/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: __dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { varsIgnorePattern: '^_', argsIgnorePattern: '^_' }],
    },
  },
  {
    // Test-only Haraka plugins stay JavaScript (Haraka loads DIR/plugins/*.js): no type
    // information, CommonJS, and the return codes Haraka puts in a plugin's scope.
    files: ['support/haraka-plugins/**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
    languageOptions: {
      sourceType: 'commonjs',
      parserOptions: { projectService: false },
      globals: {
        exports: 'writable',
        Buffer: 'readonly',
        OK: 'readonly',
        CONT: 'readonly',
        DENY: 'readonly',
        DENYSOFT: 'readonly',
        DENYDISCONNECT: 'readonly',
        DENYSOFTDISCONNECT: 'readonly',
      },
    },
    rules: { 'no-undef': 'error' },
  },
)
